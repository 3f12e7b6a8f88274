/* Unit tests of the job module: each kind of mistake at the right FILE:LINE:COL, --set, paths, hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "job/job.h"
#include "job/job_internal.h"
#include "test.h"

static job_report R;
static job_config C;
static int RC;

static int load_ov(const char *path, const char *yaml, const job_override *ov, int nov, int require) {
    job_free(&C);
    job_report_free(&R);
    job_report_init(&R);
    RC = job_load_string(yaml, strlen(yaml), path, ov, nov, require, &C, &R);
    return RC;
}
static int load(const char *yaml) { return load_ov("dir/job.yaml", yaml, NULL, 0, 0); }

/* the only diagnostic with this key (NULL and a failure when there are none or several) */
static const job_diag *diag(const char *key) {
    const job_diag *d = NULL;
    int n = 0;
    for (int i = 0; i < R.n; i++)
        if (!strcmp(R.d[i].key, key)) d = &R.d[i], n++;
    if (n != 1) {
        fprintf(stderr, "expected one diagnostic for '%s', found %d; report:\n", key, n);
        job_report_print(&R, stderr);
        return NULL;
    }
    return d;
}

#define CHECK_DIAG(key, sev, ln, cl, text)                                                                   \
    do {                                                                                                     \
        const job_diag *_d = diag(key);                                                                      \
        CHECK(_d != NULL);                                                                                   \
        if (_d) {                                                                                            \
            CHECK_EQ_INT(_d->severity, sev);                                                                 \
            CHECK_EQ_INT(_d->line, ln);                                                                      \
            CHECK_EQ_INT(_d->col, cl);                                                                       \
            CHECK_CONTAINS(_d->msg, text);                                                                   \
        }                                                                                                    \
    } while (0)

static const char *BASE = "job:\n"               /* 1 */
                          "  name: t1\n"         /* 2 */
                          "model:\n"             /* 3 */
                          "  path: m.h5\n"       /* 4 */
                          "data:\n"              /* 5 */
                          "  path: d.h5\n";      /* 6 */

static char *with(const char *extra) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", BASE, extra);
    return buf;
}

static void test_valid_and_defaults(void) {
    char *cwd = job_cwd();
    char want[1024];
    CHECK_EQ_INT(load(BASE), ERR_OK);
    CHECK_EQ_INT(R.nerr, 0);
    CHECK_EQ_INT(R.nwarn, 2); /* m.h5 and d.h5 do not exist: warnings only */
    CHECK_EQ_STR(C.job.name, "t1");
    snprintf(want, sizeof want, "%s/dir/m.h5", cwd);
    CHECK_EQ_STR(C.model.path, want);
    snprintf(want, sizeof want, "%s/dir/runs/t1", cwd);
    CHECK_EQ_STR(C.job.output_dir, want);
    snprintf(want, sizeof want, "%s/dir", cwd);
    CHECK_EQ_STR(C.dir, want);
    CHECK_EQ_INT(C.lora.rank, 8);
    CHECK_NEAR(C.lora.alpha, 16.0, 0);
    CHECK_NEAR(C.lora.dropout, 0.05, 0);
    CHECK_EQ_INT(C.lora.targets.n, 4);
    CHECK_EQ_STR(C.lora.targets.v[3], "o_proj");
    CHECK_NEAR(C.train.lr, 2e-4, 0);
    CHECK_EQ_INT(C.train.schedule, JOB_SCHED_COSINE);
    CHECK_EQ_INT(C.model.quantization, JOB_QUANT_NF4);
    CHECK_EQ_INT(C.runtime.device, JOB_DEVICE_AUTO);
    CHECK_EQ_INT(C.train.gradient_checkpointing, 1);
    CHECK_EQ_INT(C.train.full_modules.n, 0);
    CHECK_EQ_INT(C.train.lr_groups.n, 0);
    CHECK_NEAR(job_lr_for_group(&C, "mm_projector"), 2e-4, 0);
    int k = job_find_key("model.path");
    CHECK_EQ_INT(C.pos[k].from, JOB_FROM_FILE);
    CHECK_EQ_INT(C.pos[k].line, 4);
    CHECK_EQ_INT(C.pos[k].col, 9);
    CHECK_EQ_INT(C.pos[job_find_key("lora.rank")].from, JOB_FROM_DEFAULT);
    CHECK_EQ_STR(job_enum_name(job_find_key("train.nll"), JOB_NLL_ANSWER), "answer");
    CHECK_EQ_STR(job_enum_name(job_find_key("runtime.data_parallel"), JOB_DP_MPI), "mpi");
    CHECK_EQ_STR(job_enum_name(job_find_key("model.quant_scope"), JOB_QSCOPE_ALL_LINEAR), "all-linear");
    CHECK(job_enum_name(job_find_key("model.quantization"), 3) == NULL);
    free(cwd);

    /* every type written out, including lists, vision targets and lr groups */
    CHECK_EQ_INT(load(with("lora:\n"
                           "  rank: 16\n"
                           "  alpha: 32\n"
                           "  targets: [q_proj, 'vision:fc1', mm_projector]\n"
                           "  vision_layers: 4\n"
                           "  use_rslora: true\n"
                           "train:\n"
                           "  lr: 1e-5\n"
                           "  nll: answer\n"
                           "  lr_groups: {mm_projector: 2.0e-5}\n"
                           "runtime:\n"
                           "  device: cpu\n"
                           "  threads: 3\n")),
                 ERR_OK);
    CHECK_EQ_INT(C.lora.rank, 16);
    CHECK_EQ_INT(C.lora.targets.n, 3);
    CHECK_EQ_STR(C.lora.targets.v[1], "vision:fc1");
    CHECK_EQ_INT(C.lora.vision_layers, 4);
    CHECK_EQ_INT(C.lora.use_rslora, 1);
    CHECK_NEAR(C.train.lr, 1e-5, 0);
    CHECK_EQ_INT(C.train.nll, JOB_NLL_ANSWER);
    CHECK_NEAR(job_lr_for_group(&C, "mm_projector"), 2e-5, 0);
    CHECK_NEAR(job_lr_for_group(&C, "lora"), 1e-5, 0);
    CHECK_EQ_INT(C.runtime.threads, 3);
}

static void test_wrong_type(void) {
    CHECK_EQ_INT(load(with("lora:\n  rank: eight\n  use_rslora: 1\n  alpha: '16'\n")), ERR_ARGS);
    CHECK_DIAG("lora.rank", JOB_ERROR, 8, 9, "expected an integer, got 'eight'");
    CHECK_DIAG("lora.use_rslora", JOB_ERROR, 9, 15, "expected true or false");
    CHECK_DIAG("lora.alpha", JOB_ERROR, 10, 10, "remove the quotes");
    CHECK_EQ_INT(R.nerr, 3);
    CHECK(C.job.name == NULL); /* a failed load leaves nothing to free */
    CHECK_EQ_INT(load(with("train:\n  epochs: 2.5\n  lr: [1]\n")), ERR_ARGS);
    CHECK_DIAG("train.epochs", JOB_ERROR, 8, 11, "expected an integer, got 2.5");
    CHECK_DIAG("train.lr", JOB_ERROR, 9, 7, "expected a number, got a list");
    CHECK_EQ_INT(load(with("lora:\n  targets: q_proj\n")), ERR_ARGS);
    CHECK_DIAG("lora.targets", JOB_ERROR, 8, 12, "expected a list");
    CHECK_EQ_INT(load(with("train:\n  nll: yes\n  gradient_checkpointing: yes\n")), ERR_ARGS);
    CHECK_DIAG("train.gradient_checkpointing", JOB_ERROR, 9, 27, "YAML 1.1");
}

static void test_unknown_key(void) {
    CHECK_EQ_INT(load(with("lora:\n  rnak: 8\ntrian:\n  lr: 1e-4\nmodel2: {}\n")), ERR_ARGS);
    CHECK_DIAG("lora.rnak", JOB_ERROR, 8, 3, "unknown key; did you mean 'lora.rank'?");
    CHECK_DIAG("trian", JOB_ERROR, 9, 1, "did you mean 'train'?");
    CHECK_DIAG("model2", JOB_ERROR, 11, 1, "did you mean 'model'?");
    CHECK_EQ_INT(load(with("train:\n  learning_rate: 1e-4\n  rank: 4\n  zzzzzz: 1\n")), ERR_ARGS);
    CHECK_DIAG("train.learning_rate", JOB_ERROR, 8, 3, "did you mean 'train.lr'?");
    CHECK_DIAG("train.rank", JOB_ERROR, 9, 3, "did you mean 'lora.rank'?");
    CHECK_DIAG("train.zzzzzz", JOB_ERROR, 10, 3, "keys of train: epochs, max_steps");
    CHECK_EQ_INT(load(with("lora.rank: 4\n")), ERR_ARGS);
    CHECK_DIAG("lora.rank", JOB_ERROR, 7, 1, "write it nested");
}

static void test_ranges(void) {
    CHECK_EQ_INT(load(with("lora:\n  dropout: 1\n  rank: 0\ntrain:\n  lr: -2e-4\n  weight_decay: -1\n"
                           "data:\n  val_fraction: 0.999\n")),
                 ERR_ARGS);
    /* data: given twice is a duplicate section; the range errors come from the first lines */
    CHECK_DIAG("lora.dropout", JOB_ERROR, 8, 12, "must be in [0, 1), got 1");
    CHECK_DIAG("lora.rank", JOB_ERROR, 9, 9, "must be in [1, 1024], got 0");
    CHECK_DIAG("train.lr", JOB_ERROR, 11, 7, "must be in (0, 1], got -2e-4");
    CHECK_DIAG("train.weight_decay", JOB_ERROR, 12, 17, "got -1");
    CHECK_DIAG("data", JOB_ERROR, 13, 1, "duplicate section (first given at line 5, column 1)");
    CHECK_EQ_INT(load(with("train:\n  lr: 0\n  max_steps: 99999999999999999999\n")), ERR_ARGS);
    CHECK_DIAG("train.lr", JOB_ERROR, 8, 7, "must be in (0, 1], got 0");
    CHECK_DIAG("train.max_steps", JOB_ERROR, 9, 14, "too large");
    CHECK_EQ_INT(load(with("train:\n  lr: .inf\n  orpo_beta: 0x10\n")), ERR_ARGS);
    CHECK_DIAG("train.lr", JOB_ERROR, 8, 7, "expected a number, got '.inf'");
    CHECK_DIAG("train.orpo_beta", JOB_ERROR, 9, 14, "expected a number");
    CHECK_EQ_INT(load(with("train:\n  lr: 1\n  warmup_steps: 0\n")), ERR_OK); /* the bounds themselves */
}

static void test_enum(void) {
    CHECK_EQ_INT(load(with("train:\n  schedule: cosin\nmodel2:\n")), ERR_ARGS);
    CHECK_DIAG("train.schedule", JOB_ERROR, 8, 13, "'cosin' is not one of cosine, constant; did you mean 'cosine'?");
    CHECK_EQ_INT(load(with("lora:\n  targets:\n    - q_proj\n    - vision:fc3\n    - q_projj\n    - q_proj\n")),
                 ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 3);
    CHECK_EQ_INT(R.d[0].line, 10);
    CHECK_CONTAINS(R.d[0].msg, "did you mean 'vision:fc1'");
    CHECK_EQ_INT(R.d[1].line, 11);
    CHECK_CONTAINS(R.d[1].msg, "did you mean 'q_proj'");
    CHECK_EQ_INT(R.d[2].line, 12);
    CHECK_CONTAINS(R.d[2].msg, "listed twice");
    CHECK_EQ_INT(load(with("lora:\n  targets: []\ntrain:\n  lr_groups: {projector: 1e-4, lora: 2}\n")), ERR_ARGS);
    CHECK_DIAG("lora.targets", JOB_ERROR, 8, 12, "at least 1 item");
    CHECK_DIAG("train.lr_groups.projector", JOB_ERROR, 10, 15, "unknown group");
    CHECK_DIAG("train.lr_groups.lora", JOB_ERROR, 10, 38, "must be in (0, 1], got 2");
}

static void test_missing_required(void) {
    /* data: exists without path -> at the data: key; model: absent -> 1:1 */
    CHECK_EQ_INT(load("# comment\njob:\n  name: x\ndata:\n  seed: 3\n"), ERR_ARGS);
    CHECK_DIAG("data.path", JOB_ERROR, 4, 1, "required key is missing");
    CHECK_DIAG("model.path", JOB_ERROR, 1, 1, "required key is missing");
    CHECK_EQ_INT(R.nerr, 2);
    /* an empty file: one error, not a list of missing keys */
    CHECK_EQ_INT(load("# only a comment\n"), ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 1);
    CHECK_EQ_INT(R.d[0].line, 1);
    CHECK_CONTAINS(R.d[0].msg, "empty");
    /* a required key given by --set is not missing */
    job_override ov[] = {{"model.path", "/abs/m.h5"}};
    CHECK_EQ_INT(load_ov("j.yaml", "job:\n  name: x\ndata:\n  path: d.h5\n", ov, 1, 0), ERR_OK);
    CHECK_EQ_STR(C.model.path, "/abs/m.h5");
}

static void test_duplicate(void) {
    CHECK_EQ_INT(load(with("lora:\n  rank: 4\n  alpha: 8\n  rank: 16\n")), ERR_ARGS);
    CHECK_DIAG("lora.rank", JOB_ERROR, 10, 3, "duplicate key (first given at line 8, column 3)");
    CHECK_EQ_INT(R.nerr, 1);
}

static void test_syntax_error(void) {
    /* libyaml's own place (0-based marks printed 1-based); PyYAML's CLoader reports the same:
     * "did not find expected ',' or ']' in line 4, column 1"; the other two cases below likewise */
    CHECK_EQ_INT(load("job:\n  name: x\n  bad: [1, 2\n"), ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 1);
    CHECK_DIAG("", JOB_ERROR, 4, 1, "YAML syntax error: did not find expected ',' or ']'");
    CHECK_CONTAINS(R.d[0].msg, "line 3, column 8");
    CHECK_EQ_INT(load("job:\n  name: x\n model: 3\n"), ERR_ARGS);
    CHECK_DIAG("", JOB_ERROR, 3, 2, "did not find expected key (while parsing a block mapping at line 1, column 1)");
    CHECK_EQ_INT(load("job:\n\tname: x\n"), ERR_ARGS);
    CHECK_DIAG("", JOB_ERROR, 2, 1, "found character that cannot start any token");
    CHECK_CONTAINS(R.d[0].msg, "YAML indents with spaces only");
    CHECK_EQ_INT(load("\xef\xbb\xbfjob:\n  name: x\nmodel:\n  path: m\ndata:\n  path: d\n"), ERR_OK); /* UTF-8 BOM */
    CHECK_EQ_INT(load(with("---\njob:\n  name: y\n")), ERR_ARGS);
    CHECK_DIAG("", JOB_ERROR, 8, 1, "a second YAML document");
    CHECK_EQ_INT(load(with("---\n[1, 2\n")), ERR_ARGS); /* a broken second document is a syntax error too */
    CHECK_DIAG("", JOB_ERROR, 9, 1, "YAML syntax error");
}

static void test_scalar_for_mapping(void) {
    CHECK_EQ_INT(load("job:\n  name: x\nmodel: models/x.h5\ndata:\n  path: d.h5\nlora: [1]\n"), ERR_ARGS);
    CHECK_DIAG("model", JOB_ERROR, 3, 8, "expected a mapping (keys: path, quantization, quant_scope), got a scalar");
    CHECK_DIAG("lora", JOB_ERROR, 6, 7, "got a list");
    CHECK_EQ_INT(R.nerr, 2); /* model.path is not reported missing on top */
    CHECK_EQ_INT(load("- job\n"), ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 1);
    CHECK_DIAG("", JOB_ERROR, 1, 1, "got a list");
    CHECK_EQ_INT(load(with("lora:\n")), ERR_OK); /* an empty section: all defaults */
}

static void test_set(void) {
    char *cwd = job_cwd();
    char want[1024];
    job_override ov[] = {{"lora.rank", "32"},
                         {"train.lr", "5e-5"},
                         {"lora.targets", "[q_proj, v_proj, vision:out_proj]"},
                         {"train.lr_groups", "mm_projector: 1e-5, token_embeddings=2e-5"},
                         {"lora.rank", "64"},
                         {"model.path", "sub/../other.h5"},
                         {"runtime.device", "cpu"},
                         {"train.full_modules", ""}};
    CHECK_EQ_INT(load_ov("dir/job.yaml", with("lora:\n  rank: 4\n"), ov, 8, 0), ERR_OK);
    CHECK_EQ_INT(C.lora.rank, 64); /* the last --set wins over the file and earlier --set */
    CHECK_EQ_INT(C.pos[job_find_key("lora.rank")].from, JOB_FROM_SET);
    CHECK_NEAR(C.train.lr, 5e-5, 0);
    CHECK_EQ_INT(C.lora.targets.n, 3);
    CHECK_EQ_STR(C.lora.targets.v[2], "vision:out_proj");
    CHECK_EQ_INT(C.train.lr_groups.n, 2);
    CHECK_NEAR(job_lr_for_group(&C, "token_embeddings"), 2e-5, 0);
    CHECK_EQ_INT(C.runtime.device, JOB_DEVICE_CPU);
    /* a --set path resolves against the current directory, the file's against the file's directory */
    snprintf(want, sizeof want, "%s/other.h5", cwd);
    CHECK_EQ_STR(C.model.path, want);
    snprintf(want, sizeof want, "%s/dir/d.h5", cwd);
    CHECK_EQ_STR(C.data.path, want);
    /* the warning for the missing --set file names --set */
    CHECK_DIAG("model.path", JOB_WARNING, 0, 0, "No such file");
    CHECK_EQ_STR(diag("model.path")->file, "--set model.path=sub/../other.h5");

    job_override bad[] = {{"lora.rnk", "4"}, {"train.lr", "-1"}, {"nosection", "1"}, {"lora.targets", "q_proj,,k_proj"}};
    CHECK_EQ_INT(load_ov("dir/job.yaml", BASE, bad, 4, 0), ERR_ARGS);
    CHECK_DIAG("lora.rnk", JOB_ERROR, 0, 0, "unknown key in --set; did you mean 'lora.rank'?");
    CHECK_EQ_STR(diag("lora.rnk")->file, "--set lora.rnk=4");
    CHECK_DIAG("train.lr", JOB_ERROR, 0, 0, "must be in (0, 1], got -1");
    CHECK_DIAG("nosection", JOB_ERROR, 0, 0, "unknown key in --set");
    CHECK_DIAG("lora.targets", JOB_ERROR, 0, 0, "empty list item");
    free(cwd);
}

static void test_parse_set_args(void) {
    char a0[] = "validate", a1[] = "--set", a2[] = "train.lr=1e-4", a3[] = "job.yaml", a4[] = "--set=lora.rank = 4",
         a5[] = "--print-config";
    char *argv[] = {a0, a1, a2, a3, a4, a5, NULL};
    int argc = 6;
    job_override *ov;
    int nov;
    CHECK_EQ_INT(job_parse_set_args(&argc, argv, &ov, &nov), ERR_OK);
    CHECK_EQ_INT(argc, 3);
    CHECK_EQ_STR(argv[1], "job.yaml");
    CHECK_EQ_STR(argv[2], "--print-config");
    CHECK(argv[3] == NULL);
    CHECK_EQ_INT(nov, 2);
    CHECK_EQ_STR(ov[0].key, "train.lr");
    CHECK_EQ_STR(ov[0].value, "1e-4");
    CHECK_EQ_STR(ov[1].key, "lora.rank");
    CHECK_EQ_STR(ov[1].value, " 4");
    CHECK_EQ_INT(load_ov("dir/job.yaml", BASE, ov, nov, 0), ERR_OK); /* " 4" is read as 4 */
    CHECK_EQ_INT(C.lora.rank, 4);
    job_free_overrides(ov, nov);
    char b1[] = "--set", b2[] = "novalue";
    char *argv2[] = {a0, b1, b2, NULL};
    argc = 3;
    CHECK_EQ_INT(job_parse_set_args(&argc, argv2, &ov, &nov), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "expected key.path=value");
    CHECK(ov == NULL);
    char *argv3[] = {a0, b1, NULL};
    argc = 2;
    CHECK_EQ_INT(job_parse_set_args(&argc, argv3, &ov, &nov), ERR_ARGS);
    err_clear();
}

static void test_files(void) {
    const char *tmp = test_tmpdir();
    char job[512], model[512], yaml[1024];
    snprintf(job, sizeof job, "%s/jobs/j.yaml", tmp);
    snprintf(model, sizeof model, "%s/m.h5", tmp);
    FILE *fp = fopen(model, "wb");
    CHECK(fp != NULL);
    if (fp) fclose(fp);
    snprintf(yaml, sizeof yaml, "job:\n  name: f\nmodel:\n  path: ../m.h5\ndata:\n  path: ../nothere.h5\n");
    CHECK_EQ_INT(load_ov(job, yaml, NULL, 0, 0), ERR_OK);
    CHECK_EQ_STR(C.model.path, model);
    CHECK_EQ_INT(R.nwarn, 1);
    CHECK_DIAG("data.path", JOB_WARNING, 6, 9, "No such file");
    CHECK_EQ_INT(load_ov(job, yaml, NULL, 0, 1), ERR_ARGS); /* require_files: the same place, an error */
    CHECK_DIAG("data.path", JOB_ERROR, 6, 9, "No such file");
    CHECK_EQ_INT(R.nerr, 1);
    /* the job file itself through job_load, and a missing job file */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/jobs", tmp);
    mkdir(dir, 0777);
    fp = fopen(job, "wb");
    if (fp) {
        fputs(yaml, fp);
        fclose(fp);
    }
    job_free(&C);
    job_report_free(&R);
    CHECK_EQ_INT(job_load(job, NULL, 0, 0, &C, &R), ERR_OK);
    CHECK_EQ_STR(C.model.path, model);
    CHECK_EQ_STR(C.file, job);
    job_free(&C);
    job_report_free(&R);
    CHECK_EQ_INT(job_load("/nonexistent/x.yaml", NULL, 0, 0, &C, &R), ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 1);
    CHECK_CONTAINS(R.d[0].msg, "cannot open");
    /* no report given: the error message carries the first diagnostic */
    job_free(&C);
    CHECK_EQ_INT(job_load_string("job: 1\n", 7, "x.yaml", NULL, 0, 0, &C, NULL), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "x.yaml:1:6: job: expected a mapping");
    err_clear();
}

static void test_every_problem(void) {
    /* many mistakes in one file: each reported, in file order */
    CHECK_EQ_INT(load("job:\n  name: 'bad name'\nmodel:\n  path: m.h5\n  quantization: nf5\ndata:\n  path: d.h5\n"
                      "  seed: -1\ntrain:\n  full_modules: [mm_projector]\nlora:\n  targets: [mm_projector]\n"
                      "  vision_layers: 2\nruntime:\n  device: cpu\n  data_parallel: nccl\n"),
                 ERR_ARGS);
    CHECK_EQ_INT(R.nerr, 5);
    CHECK_DIAG("job.name", JOB_ERROR, 2, 9, "not a valid name");
    CHECK_DIAG("model.quantization", JOB_ERROR, 5, 17, "did you mean 'nf4'");
    CHECK_DIAG("data.seed", JOB_ERROR, 8, 9, "must be >= 0");
    CHECK_DIAG("train.full_modules", JOB_ERROR, 10, 17, "also in lora.targets");
    CHECK_DIAG("runtime.data_parallel", JOB_ERROR, 16, 18, "nccl needs GPUs");
    CHECK_DIAG("lora.vision_layers", JOB_WARNING, 13, 18, "no vision:* target");
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);
    job_report_print(&R, fp);
    fclose(fp);
    CHECK_CONTAINS(out, "dir/job.yaml:2:9: job.name: 'bad name' is not a valid name");
    CHECK_CONTAINS(out, "dir/job.yaml:13:18: lora.vision_layers: warning: has no effect");
    CHECK(strstr(out, ":2:9:") < strstr(out, ":5:17:") && strstr(out, ":5:17:") < strstr(out, ":8:9:"));
    free(out);
    /* a NUL inside a double-quoted scalar */
    CHECK_EQ_INT(load("job:\n  name: \"a\\0b\"\nmodel:\n  path: m\ndata:\n  path: d\n"), ERR_ARGS);
    CHECK_DIAG("job.name", JOB_ERROR, 2, 9, "NUL");
}

static char *config_yaml(const job_config *c) {
    char *out = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&out, &len);
    job_write_yaml(c, fp);
    fclose(fp);
    return out;
}

static void test_hash_and_roundtrip(void) {
    /* the hash of the defaults around BASE, pinned: it must not drift between versions */
    CHECK_EQ_INT(load(BASE), ERR_OK);
    uint64_t h0 = job_hash(&C);
    CHECK(h0 == 0xe537171321898c80ull || (fprintf(stderr, "hash %016llx\n", (unsigned long long)h0), 0));
    /* same values written differently, key order changed, list reordered, non-result keys changed */
    CHECK_EQ_INT(load_ov("elsewhere/j.yaml",
                         "data: {path: d.h5}\nmodel:\n  path: m.h5\n  quantization: \"nf4\"\n"
                         "lora:\n  targets: [o_proj, v_proj, k_proj, q_proj]\n  alpha: 16.0\ntrain:\n  lr: 0.0002\n"
                         "  max_steps: 7\n  gradient_checkpointing: false\neval:\n  every_steps: 3\n"
                         "runtime:\n  threads: 5\n  device: cpu\njob:\n  name: other\n",
                         NULL, 0, 0),
                 ERR_OK);
    CHECK(job_hash(&C) == h0);
    /* each result-changing key changes it */
    const char *changes[][2] = {{"lora.rank", "9"},          {"train.lr", "3e-4"},
                                {"data.seed", "1"},          {"train.seed", "1"},
                                {"lora.targets", "q_proj"},  {"model.path", "x/other.h5"},
                                {"train.nll", "answer"},     {"train.lr_groups", "lora: 1e-4"},
                                {"lora.use_rslora", "true"}, {"data.max_tokens", "100"}};
    for (int i = 0; i < 10; i++) {
        job_override ov = {changes[i][0], changes[i][1]};
        CHECK_EQ_INT(load_ov("dir/job.yaml", BASE, &ov, 1, 0), ERR_OK);
        CHECK(job_hash(&C) != h0);
        CHECK(job_key_result_changing(job_find_key(changes[i][0])));
    }
    const char *same[] = {"train.max_steps", "eval.every_steps", "checkpoint.every_steps", "runtime.threads",
                          "runtime.device", "job.name", "job.output_dir", "runtime.gpu_memory_gb"};
    for (int i = 0; i < 8; i++) CHECK(!job_key_result_changing(job_find_key(same[i])));
    CHECK(job_key_result_changing(job_find_key("model.path")));
    CHECK(!job_key_result_changing(-1));

    /* the effective YAML reads back to the same configuration, paths included */
    job_override ov[] = {{"train.lr_groups", "mm_projector: 2e-5"}, {"lora.targets", "q_proj,vision:fc2"},
                         {"job.output_dir", "/tmp/out \"dir\""}};
    CHECK_EQ_INT(load_ov("dir/job.yaml", with("train:\n  lr: 1.5e-4\n"), ov, 3, 0), ERR_OK);
    uint64_t h1 = job_hash(&C);
    char *y1 = config_yaml(&C);
    char *model = strdup(C.model.path), *outdir = strdup(C.job.output_dir);
    CHECK_CONTAINS(y1, "lr: 0.00015\n");
    CHECK_CONTAINS(y1, "lr_groups: {mm_projector: 2.0e-05}  # --set\n");
    CHECK_CONTAINS(y1, "quant_scope: decoder  # default\n");
    CHECK_EQ_INT(load_ov("/somewhere/else/frozen.yaml", y1, NULL, 0, 0), ERR_OK);
    CHECK(job_hash(&C) == h1);
    CHECK_EQ_STR(C.model.path, model);
    CHECK_EQ_STR(C.job.output_dir, "/tmp/out \"dir\"");
    CHECK_EQ_STR(C.lora.targets.v[1], "vision:fc2");
    char *y2 = config_yaml(&C);
    /* identical but for the header's file name and the origin comments */
    CHECK_CONTAINS(y2, "lr_groups: {mm_projector: 2.0e-05}\n");
    CHECK(strstr(y2, "# default") == NULL);
    free(y1);
    free(y2);
    free(model);
    free(outdir);
}

static void test_helpers(void) {
    char *p;
    CHECK_EQ_STR(p = job_path_join("/a/b", "../c/./d"), "/a/c/d");
    free(p);
    CHECK_EQ_STR(p = job_path_join("/a/b", "/x//y/"), "/x/y");
    free(p);
    CHECK_EQ_STR(p = job_path_join("/", "../../x"), "/x");
    free(p);
    CHECK_EQ_STR(p = job_path_join("/a", ".."), "/");
    free(p);
    CHECK_EQ_STR(p = job_path_join("a/b", "../../../c"), "../c");
    free(p);
    CHECK_EQ_INT(job_edit_distance("rank", "rnak"), 1);
    CHECK_EQ_INT(job_edit_distance("cosine", "cosin"), 1);
    CHECK_EQ_INT(job_edit_distance("", "abc"), 3);
    CHECK_EQ_INT(job_edit_distance("kitten", "sitting"), 3);
    char b[64];
    job_fmt_float(2e-4, b, sizeof b);
    CHECK_EQ_STR(b, "0.0002");
    job_fmt_float(1e-5, b, sizeof b);
    CHECK_EQ_STR(b, "1.0e-05");
    job_fmt_float(16, b, sizeof b);
    CHECK_EQ_STR(b, "16.0");
    job_fmt_float(0.1, b, sizeof b);
    CHECK_EQ_STR(b, "0.1");
    CHECK(job_name_ok("llava16-mistral7b-8gb"));
    CHECK(!job_name_ok("-x"));
    CHECK(!job_name_ok("a/b"));
}

int main(void) {
    job_report_init(&R);
    test_valid_and_defaults();
    test_wrong_type();
    test_unknown_key();
    test_ranges();
    test_enum();
    test_missing_required();
    test_duplicate();
    test_syntax_error();
    test_scalar_for_mapping();
    test_set();
    test_parse_set_args();
    test_files();
    test_every_problem();
    test_hash_and_roundtrip();
    test_helpers();
    job_free(&C);
    job_report_free(&R);
    TEST_MAIN_END();
}
