/* job_run — train / resume / eval of one job: the lifecycle around the step loop (see job_run.h). Read job_run
 * top to bottom. */
#include "job/job_run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "backend/tensor.h"
#include "data/dataset.h"
#include "dist/dist.h"
#include "io/atomic.h"
#include "io/content_hash.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"
#include "io/mem.h"
#include "job/job_pairs.h"
#include "job/job_plan.h"
#include "model/llava_train.h"
#include "train/ckpt.h"
#include "train/metrics.h"
#include "train/trainer.h"

/* ---- signals ----------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop, g_sigint;

static void on_signal(int sig) {
    if (sig == SIGINT && g_sigint) _exit(130); /* a second Ctrl-C: abort at once */
    if (sig == SIGINT) g_sigint = 1;
    g_stop = sig;
}

void job_run_signal_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    /* a file-size limit (ulimit -f) must give a clean exit 4 with a message, not death by SIGXFSZ */
    signal(SIGXFSZ, SIG_IGN);
}

int job_run_stop_requested(void) { return (int)g_stop; }

void job_run_opts_default(job_run_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = JOB_RUN_RESUME;
}

/* ---- the job as a trainer configuration ---------------------------------------------------------- */

/* the job's LoRA and training keys as a trainer spec */
int job_run_spec(const job_config *j, lt_spec *s) {
    lt_spec_default(s);
    s->rank = (int)j->lora.rank;
    s->alpha = (float)j->lora.alpha;
    s->dropout = (float)j->lora.dropout;
    s->rslora = j->lora.use_rslora;
    s->train_token_rows = j->lora.train_new_token_embeddings;
    s->vision_layers = (int)j->lora.vision_layers;
    s->grad_ckpt = j->train.gradient_checkpointing;
    s->nll_prompt = j->train.nll == JOB_NLL_ALL;
    s->seed = (uint64_t)j->train.seed;
    s->act_dtype = j->runtime.precision == JOB_PREC_BF16 ? DT_BF16 : DT_F32; /* auto: fp32, the CPU's (the only
                                                                              * training device today) */
    s->targets = 0;
    static const char *dec[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "mm_projector",
                                "lm_head"};
    static const char *vis[] = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"};
    for (int i = 0; i < j->lora.targets.n; i++) {
        const char *tg = j->lora.targets.v[i];
        int found = 0;
        if (!strncmp(tg, "vision:", 7)) {
            for (int k = 0; k < 6; k++)
                if (!strcmp(tg + 7, vis[k])) s->vision_targets |= 1u << k, found = 1;
        } else {
            for (int k = 0; k < 9; k++)
                if (!strcmp(tg, dec[k])) s->targets |= 1u << k, found = 1;
        }
        if (!found) return err_set(ERR_ARGS, "lora.targets: unknown target '%s'", tg);
    }
    for (int i = 0; i < j->train.full_modules.n; i++) {
        if (strcmp(j->train.full_modules.v[i], "mm_projector"))
            return err_set(ERR_ARGS, "train.full_modules: '%s' cannot be trained fully (only mm_projector)",
                           j->train.full_modules.v[i]);
        s->full_projector = 1;
    }
    return ERR_OK;
}

typedef struct run {
    const job_config *j;
    job_config view;       /* what the frozen job.yaml and the job hash describe: train.grad_accum counts the
                            * micro-batches of a step on all ranks together (world x grad_accum) */
    dist *d;               /* data parallel (train, resume); NULL for eval */
    const job_run_opts *o;
    char dir[4096];        /* job.output_dir */
    char *job_yaml;        /* the configuration as job_write_yaml writes it */
    tr_group_lr *glr;
    tr_config c;
    trainer *t;
    uint64_t model_hash, data_hash;
} run;

_Static_assert((int)DIST_AUTO == (int)JOB_DP_AUTO && (int)DIST_NONE == (int)JOB_DP_NONE &&
                   (int)DIST_NCCL == (int)JOB_DP_NCCL && (int)DIST_MPI == (int)JOB_DP_MPI,
               "runtime.data_parallel values are dist kinds");

static int config_from_job(run *r) {
    const job_config *j = r->j;
    tr_config *c = &r->c;
    memset(c, 0, sizeof *c);
    int rc = job_run_spec(j, &c->spec);
    if (rc) return rc;
    c->name = j->job.name;
    c->model_path = j->model.path;
    c->data_path = j->data.path;
    c->output_dir = r->dir;
    c->precision_auto = j->runtime.precision == JOB_PREC_AUTO;
    c->attention = j->runtime.attention; /* the AFZ_* order of the key's values (job_keys.c) */
    c->device = j->runtime.device == JOB_DEVICE_CUDA ? TR_DEVICE_CUDA
                : j->runtime.device == JOB_DEVICE_CPU ? TR_DEVICE_CPU : TR_DEVICE_AUTO;
    c->threads = (int)j->runtime.threads;
    c->max_pairs = j->data.max_pairs;
    c->epochs = j->train.epochs;
    c->max_steps = j->train.max_steps;
    c->micro_batch_pairs = j->train.micro_batch_pairs;
    c->grad_accum = j->train.grad_accum;
    c->warmup_steps = j->train.warmup_steps;
    c->lr = j->train.lr;
    c->weight_decay = j->train.weight_decay;
    c->max_grad_norm = j->train.max_grad_norm;
    c->orpo_beta = j->train.orpo_beta;
    c->cosine = j->train.schedule == JOB_SCHED_COSINE;
    c->nll_all = j->train.nll == JOB_NLL_ALL;
    c->seed = (uint64_t)j->train.seed;
    int ng = j->train.lr_groups.n;
    r->glr = mem_calloc((size_t)(ng ? ng : 1), sizeof *r->glr, "learning rates of groups");
    for (int i = 0; i < ng; i++) r->glr[i] = (tr_group_lr){j->train.lr_groups.name[i], job_lr_for_group(j, j->train.lr_groups.name[i])};
    c->group_lr = r->glr;
    c->n_group_lr = ng;
    c->ckpt_every = j->checkpoint.every_steps;
    c->keep_last = j->checkpoint.keep_last;
    c->eval_every = j->eval.every_steps;
    c->eval_max_pairs = j->eval.max_pairs;
    c->eval_samples = j->eval.samples;
    /* generation's new tokens at most, for the plan's KV cache: generate's --max-new (128 by default), the
     * hallucination benchmark's 48 (job_generate.c); eval samples add their own (trainer.c) */
    if (r->o->mode == JOB_RUN_GENERATE) c->gen_max_new = r->o->max_new > 0 ? (int)r->o->max_new : 128;
    if (r->o->hallucination && c->gen_max_new < 48) c->gen_max_new = 48;
    c->job_hash = job_hash(&r->view);
    c->job_yaml = r->job_yaml;
    c->stop_requested = job_run_stop_requested;
    c->log_every_s = j->runtime.log_every_s;
    c->vision_cache = j->runtime.vision_cache; /* used when training (evaluation and generation run the tower) */
    return ERR_OK;
}

/* ---- frozen configuration ------------------------------------------------------------------------ */

char *job_run_yaml(const job_config *j) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) mem_alloc((size_t)-1, "the job's YAML text"); /* exits 4 */
    job_write_yaml(j, f);
    fclose(f);
    return buf;
}

/* value line of key `path` ("section.key") in job_write_yaml text, or NULL */
static const char *yaml_value(const char *y, const char *path, char *out, size_t cap) {
    const char *dot = strchr(path, '.');
    char sect[64], key[64];
    snprintf(sect, sizeof sect, "%.*s:", (int)(dot - path), path);
    snprintf(key, sizeof key, "  %s:", dot + 1);
    const char *p = y;
    int in = 0;
    while (p && *p) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (p[0] != ' ' && p[0] != '#') in = !strncmp(p, sect, strlen(sect));
        else if (in && !strncmp(p, key, strlen(key))) {
            const char *v = p + strlen(key);
            size_t vl = len - strlen(key);
            const char *c = memchr(v, '#', vl); /* drop "# default" comments */
            if (c) vl = (size_t)(c - v);
            while (vl && (v[vl - 1] == ' ')) vl--;
            while (vl && *v == ' ') v++, vl--;
            snprintf(out, cap, "%.*s", (int)vl, v);
            return out;
        }
        p = e ? e + 1 : NULL;
    }
    return NULL;
}

/* keys that change what eval computes from a checkpoint: the model, the adapters, the loss */
static int eval_relevant(const char *path) {
    return !strncmp(path, "model.", 6) || !strncmp(path, "lora.", 5) || !strcmp(path, "train.orpo_beta") ||
           !strcmp(path, "train.nll") || !strcmp(path, "train.full_modules");
}

/* "\n  key: A then, B now" for each result-changing key (eval: each eval-relevant one) that differs */
static void diff_keys(const char *then, const char *now, int for_eval, char *diff, size_t cap) {
    int nk = 0;
    const job_key *keys = job_keys(&nk);
    diff[0] = 0;
    for (int i = 0; i < nk; i++) {
        if (!job_key_result_changing(i) || (for_eval && !eval_relevant(keys[i].path))) continue;
        /* model.path, data.path: the inputs are compared by content (check_inputs, the hashes each checkpoint
         * records), not by path: a run directory and its inputs may move, e.g. from scratch to project storage */
        if (keys[i].flags & JOB_K_FILE) continue;
        char a[512], b[512];
        const char *va = yaml_value(then, keys[i].path, a, sizeof a), *vb = yaml_value(now, keys[i].path, b, sizeof b);
        if ((va == NULL) != (vb == NULL) || (va && strcmp(va, vb)))
            snprintf(diff + strlen(diff), cap - strlen(diff), "\n  %.64s: %.200s then, %.200s now", keys[i].path,
                     va ? va : "(absent)", vb ? vb : "(absent)");
    }
}

/* A later start must agree with output_dir/job.yaml on every key that changes the result (nothing is written) */
static int compare_frozen(run *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/job.yaml", r->dir);
    if (!fs_exists(path)) return ERR_OK;
    char *old = NULL;
    size_t n = 0;
    int rc = fs_read_all(path, &old, &n);
    if (rc) return rc;
    char diff[2048];
    diff_keys(old, r->job_yaml, 0, diff, sizeof diff);
    free(old);
    if (diff[0] && strstr(diff, "train.grad_accum:"))
        snprintf(diff + strlen(diff), sizeof diff - strlen(diff), "\n  (train.grad_accum is recorded as ranks x "
                 "train.grad_accum, the micro-batches of a step; this start: %d ranks x %lld)", dist_world(r->d),
                 (long long)r->j->train.grad_accum);
    if (diff[0])
        return err_set(ERR_ARGS, "%s: this job was started (%s) with other values of keys that change the "
                       "result; use the old values, or start over with train --restart:%s", r->j->file, path, diff);
    return ERR_OK;
}

/* The first start that got through its set-up freezes the configuration into output_dir/job.yaml: a start that
 * failed (a bad data file, exit 3) leaves nothing behind to compare with. */
static int freeze(run *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/job.yaml", r->dir);
    if (fs_exists(path)) return ERR_OK;
    return atomic_write_file(path, r->job_yaml, strlen(r->job_yaml));
}

/* ---- inputs: content hashes of model.h5 and data.h5 -------------------------------------------------- */

/* the hash recorded at import; for a file without one, computed now (and said so) */
static int input_hash(const char *path, const char *what, uint64_t *h) {
    int found = 0;
    int rc = chash_read(path, h, &found);
    if (rc || found) return rc;
    double t0 = log_now();
    if ((rc = chash_file(path, h))) return rc;
    char hex[CHASH_HEX];
    chash_hex(*h, hex);
    log_warn("%s: no recorded content hash (imported by an older orpo-hpc); computed it: %s (%.1f s). "
             "A new import-%s records it, so that starts need not read the whole file", path, hex,
             log_now() - t0, what);
    return ERR_OK;
}

int job_run_input_hashes(const job_config *j, uint64_t *model_hash, uint64_t *data_hash) {
    int rc = input_hash(j->model.path, "model", model_hash);
    if (!rc) rc = input_hash(j->data.path, "data", data_hash);
    return rc;
}

static int input_hashes(run *r) {
    int rc = job_run_input_hashes(r->j, &r->model_hash, &r->data_hash);
    r->c.model_hash = r->model_hash;
    r->c.data_hash = r->data_hash;
    return rc;
}

/* the checkpoint was written from other inputs than those at the same paths now: exit 2 unless accepted.
 * data_same_path 0 (eval on another data set, by its path): the data hash is not compared. */
static int check_inputs(run *r, const char *ckpt, const tr_restored *got, int data_same_path) {
    if (got->format_version < 2) {
        log_warn("%s: a checkpoint of format %lld records no content hashes of its inputs: model.h5 and data.h5 "
                 "are not checked against it", ckpt, (long long)got->format_version);
        return ERR_OK;
    }
    char msg[2048] = "";
    char a[CHASH_HEX], b[CHASH_HEX];
    if (got->model_hash != r->model_hash) {
        chash_hex(got->model_hash, a);
        chash_hex(r->model_hash, b);
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "\n  model %s: content hash %s then, %s now",
                 r->j->model.path, a, b);
    }
    if (data_same_path && got->data_hash != r->data_hash) {
        chash_hex(got->data_hash, a);
        chash_hex(r->data_hash, b);
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "\n  data %s: content hash %s then, %s now",
                 r->j->data.path, a, b);
    }
    if (!msg[0]) return ERR_OK;
    const char *verb = r->o->mode == JOB_RUN_EVAL ? "eval" : "resume";
    if (r->o->accept_changed_inputs) {
        log_warn("%s: the inputs changed since this checkpoint was written; going on as asked "
                 "(--accept-changed-inputs):%s", ckpt, msg);
        return ERR_OK;
    }
    return err_set(ERR_ARGS, "%s: the inputs changed since this checkpoint was written (same path, other content):%s\n"
                   "  Re-import the original file, or accept the change with `orpo-hpc %s --accept-changed-inputs %s`",
                   ckpt, msg, verb, r->j->file);
}

/* ---- the output directory ------------------------------------------------------------------------- */

/* One trainer per output directory from its first file operation on. met_open's lock (DIR/metrics/lock) comes
 * after restore and lives in a directory that train --restart moves aside: a `train --restart` started while a
 * trainer runs would move the running trainer's files away and then get a fresh lock of its own. This lock file
 * stays in DIR and is taken before anything there is read, moved or written; the kernel drops it when the
 * process dies. */
static int lock_dir(const char *dir, int *fd) {
    char p[4200];
    snprintf(p, sizeof p, "%s/run.lock", dir);
    *fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (*fd < 0) return err_set(ERR_IO, "%s: cannot create the lock file: %s", p, strerror(errno));
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0) return ERR_OK;
    int e = errno;
    if (e == ENOLCK || e == EINVAL || e == EOPNOTSUPP) {
        log_debug("%s: no flock on this file system (%s); not locked", p, strerror(e));
        return ERR_OK;
    }
    close(*fd);
    *fd = -1;
    if (e == EWOULDBLOCK)
        return err_set(ERR_IO, "%s: another orpo-hpc process is running this job there (lock %s is held); "
                       "nothing was changed", dir, p);
    return err_set(ERR_IO, "%s: cannot lock: %s", p, strerror(e));
}

/* train --restart: the old checkpoints and metrics move to output_dir/restart-<time>/, nothing is deleted */
static int move_aside(const char *dir) {
    char aside[4200], from[4200], to[4400];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int len = snprintf(aside, sizeof aside, "%s/restart-%04d%02d%02d-%02d%02d%02d", dir, tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    /* two restarts within the same second: restart-<time>-2, -3, ... */
    for (int k = 2; fs_exists(aside) && k < 1000 && len > 0 && (size_t)len < sizeof aside - 8; k++)
        snprintf(aside + len, sizeof aside - (size_t)len, "-%d", k);
    const char *names[] = {"checkpoints", "metrics", "metrics.h5", "job.yaml"};
    int any = 0;
    for (int i = 0; i < 4; i++) {
        snprintf(from, sizeof from, "%s/%s", dir, names[i]);
        any |= fs_exists(from);
    }
    if (!any) return ERR_OK; /* a first run: nothing to keep */
    int rc = fs_mkdirs(aside);
    for (int i = 0; !rc && i < 4; i++) {
        snprintf(from, sizeof from, "%s/%s", dir, names[i]);
        snprintf(to, sizeof to, "%s/%s", aside, names[i]);
        if (fs_exists(from) && rename(from, to))
            rc = err_set(ERR_IO, "%s: cannot move to %s: %s", from, to, strerror(errno));
    }
    if (!rc) log_info("--restart: previous checkpoints and metrics moved to %s", aside);
    return rc;
}

/* train: refuse a directory that holds checkpoints (without --restart); nothing is moved here */
static int fresh_start(run *r) {
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/checkpoints", r->dir);
    int n = 0;
    int64_t steps[1];
    if (!r->o->restart && fs_exists(probe) && ckpt_list(r->dir, steps, 1, &n) == ERR_OK && n > 0)
        return err_set(ERR_ARGS, "%s holds checkpoints already: continue with `orpo-hpc resume %s`, or start "
                       "over with `orpo-hpc train --restart %s` (the old ones are kept aside)", probe, r->j->file,
                       r->j->file);
    return ERR_OK;
}

/* data.val_fraction, data.seed and data.max_tokens describe how import-data split and filtered data.h5: the
 * split is made there, once. A job that says otherwise is refused (train, resume; eval warns), never ignored. */
static int check_data_keys(run *r) {
    const job_config *j = r->j;
    ds_file *d = NULL;
    int rc = ds_open(j->data.path, &d);
    if (rc) return rc;
    const ds_meta *m = ds_meta_of(d);
    char msg[1024] = "";
    if (j->data.val_fraction != m->val_fraction)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "\n  data.val_fraction: %g in the job, %g in data.h5 "
                 "(import-data --val-fraction)", j->data.val_fraction, m->val_fraction);
    if ((uint64_t)j->data.seed != m->seed)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "\n  data.seed: %lld in the job, %llu in data.h5 "
                 "(import-data --seed)", (long long)j->data.seed, (unsigned long long)m->seed);
    if (j->data.max_tokens != m->max_tokens)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), "\n  data.max_tokens: %lld in the job, %lld in data.h5 "
                 "(import-data --max-tokens)", (long long)j->data.max_tokens, (long long)m->max_tokens);
    ds_close(d);
    if (!msg[0]) return ERR_OK;
    if (r->o->mode == JOB_RUN_EVAL || r->o->accept_changed_inputs) {
        log_warn("%s: the job's split keys differ from how %s was imported; the split stored there is used:%s",
                 j->file, j->data.path, msg);
        return ERR_OK;
    }
    return err_set(ERR_ARGS, "%s: the job disagrees with %s, whose split was made by import-data (the split is "
                   "stored there and never redone at train time):%s\n  Set the job's keys to the values of data.h5, "
                   "or run import-data again with the job's values (--accept-changed-inputs: go on with a warning)", j->file, j->data.path, msg);
}

/* ---- eval ------------------------------------------------------------------------------------------ */

/* the benchmark's result as a row of the halluc table of metrics.h5 */
static int record_halluc(run *r, const job_halluc_result *h) {
    fflush(stdout);
    met_log *m = NULL;
    int rc = met_open_eval(r->dir, &m);
    if (rc == ERR_IO && strstr(err_msg(), "another orpo-hpc process")) {
        log_warn("%s/metrics.h5: a trainer is writing it; this benchmark was not recorded there", r->dir);
        err_clear();
        return ERR_OK;
    }
    if (rc) return rc;
    met_halluc row = {h->step, h->answers, h->answered, h->false_answers, h->mentions, h->absent, h->rate, h->chair, 0};
    rc = met_halluc_row(m, &row);
    int crc = met_close(m, "eval");
    if (!rc) rc = crc;
    if (!rc) log_info("recorded in %s/metrics.h5 (table halluc)", r->dir);
    return rc;
}

static int run_eval(run *r) {
    const job_config *j = r->j;
    char path[4200] = "";
    int64_t step = -1;
    int rc;
    if (r->o->checkpoint) {
        snprintf(path, sizeof path, "%s", r->o->checkpoint);
        if ((rc = ckpt_verify(path, &step))) return rc;
    } else if ((rc = ckpt_find_latest(r->dir, path, sizeof path, &step))) {
        return rc;
    }
    job_pairs *pairs = NULL;
    if (r->o->pairs_out && (rc = job_pairs_open(r->o->pairs_out, &pairs))) return rc;
    if (!rc) rc = check_data_keys(r);
    if (!rc) rc = input_hashes(r);
    if (!rc) rc = tr_open(&r->c, TR_EVAL, &r->t);
    if (!rc && step >= 0) {
        tr_restored got;
        rc = tr_restore(r->t, path, 0, &got);
        if (!rc) {
            char diff[2048], a[512], b[512];
            diff_keys(got.job_yaml, r->job_yaml, 1, diff, sizeof diff);
            if (diff[0])
                rc = err_set(ERR_ARGS, "%s: the checkpoint was trained with other values of keys that change what "
                             "eval computes; use its values:%s", path, diff);
            const char *then = yaml_value(got.job_yaml, "data.path", a, sizeof a);
            const char *now = yaml_value(r->job_yaml, "data.path", b, sizeof b);
            int same = then && now && !strcmp(then, now);
            if (!rc && !same)
                log_info("evaluating on %s; the checkpoint was trained on %s", now ? now : "?", then ? then : "?");
            if (!rc) rc = check_inputs(r, path, &got, same);
            free(got.job_yaml);
        }
    }
    if (!rc && r->o->hallucination) {
        job_halluc_result hr;
        rc = job_halluc(r->t, r->o, step < 0 ? 0 : step, &hr);
        if (!rc) rc = record_halluc(r, &hr);
        return rc;
    }
    met_val vr;
    int64_t n = 0;
    if (!rc) rc = tr_evaluate(r->t, &vr, &n, pairs ? job_pairs_add : NULL, pairs);
    if (!rc)
        printf("eval %s at step %lld: %lld validation pairs\n  accuracy %.4f\n  loss %.6f\n  nll_loss %.6f\n"
               "  chosen_logps %.6f\n  rejected_logps %.6f\n", j->job.name, (long long)vr.step, (long long)n,
               vr.accuracy, vr.loss, vr.nll_loss, vr.chosen_logps, vr.rejected_logps);
    if (pairs) {
        job_pairs_meta pm = {vr.step, path, j->model.path, j->data.path};
        int prc = job_pairs_close(pairs, &pm, !rc);
        if (!rc && !(rc = prc)) printf("  per-pair results: %s\n", r->o->pairs_out);
    }
    /* the result as a stand-alone val row of metrics.h5; a running trainer holds the metrics: leave them to it */
    if (!rc) {
        fflush(stdout);
        met_log *m = NULL;
        int mrc = met_open_eval(r->dir, &m);
        if (mrc == ERR_IO && strstr(err_msg(), "another orpo-hpc process")) {
            log_warn("%s/metrics.h5: a trainer is writing it (its lock is held); this evaluation was not recorded "
                     "there (the trainer's own validation rows are)", r->dir);
            err_clear();
        } else if (mrc) {
            rc = mrc;
        } else {
            rc = met_eval_row(m, &vr);
            int crc = met_close(m, "eval");
            if (!rc) rc = crc;
            if (!rc) printf("  recorded in %s/metrics.h5 (table val, standalone 1)\n", r->dir);
        }
    }
    return rc;
}

/* ---- generate --------------------------------------------------------------------------------------- */

/* the chosen checkpoint (STEP, latest, none or a file) into a trainer opened for evaluation; job_generate does the
 * rest. Nothing is written in DIR. */
static int run_generate(run *r) {
    const char *which = r->o->checkpoint;
    char path[4200] = "";
    int64_t step = -1;
    int rc = ERR_OK;
    if (r->o->data) r->c.data_path = r->o->data;
    if (which && !strcmp(which, "none")) {
        log_info("generate: the base model (--checkpoint none)");
    } else if (!which || !strcmp(which, "latest")) {
        if (!(rc = ckpt_find_latest(r->dir, path, sizeof path, &step)) && step < 0)
            rc = err_set(ERR_ARGS, "%s/checkpoints: no checkpoint that verifies; train the job first or use "
                         "--checkpoint none (the base model)", r->dir);
    } else {
        char *end;
        long long s = strtoll(which, &end, 10);
        if (*which && !*end) rc = ckpt_path(r->dir, s, path, sizeof path);
        else snprintf(path, sizeof path, "%s", which);
        if (!rc && !fs_exists(path)) rc = err_set(ERR_ARGS, "--checkpoint %s: %s does not exist", which, path);
        if (!rc) rc = ckpt_verify(path, &step);
    }
    if (!rc) rc = tr_open(&r->c, TR_EVAL, &r->t);
    if (!rc && step >= 0) {
        tr_restored got;
        if (!(rc = tr_restore(r->t, path, 0, &got))) free(got.job_yaml);
        if (!rc) log_info("generate: checkpoint %s (step %lld)", path, (long long)step);
    }
    return rc ? rc : job_generate(r->t, r->o);
}

/* ---- train and resume ------------------------------------------------------------------------------ */

/* Data parallel: rank 0 alone decides about the output directory and writes there (job.yaml, metrics.h5, the
 * checkpoints); every rank loads the model and data and restores the same checkpoint; dist_status makes every rank
 * stop where one of them failed. */
static int run_train(run *r) {
    const job_config *j = r->j;
    int lead = dist_rank(r->d) == 0;
    int rc = ERR_OK;
    int restart = r->o->mode == JOB_RUN_TRAIN && r->o->restart;
    if (lead && r->o->mode == JOB_RUN_TRAIN) rc = fresh_start(r);
    if (!rc && lead && !restart) rc = compare_frozen(r);
    rc = dist_status(r->d, rc, "the start");
    if (!rc) rc = input_hashes(r);
    /* the plan (orpo-hpc plan): its summary logged, its memory strategies the trainer's; never an error */
    if (!rc) jp_log_start(j, lead, &r->c.strategy, &r->c.have_strategy);
    if (!rc) rc = tr_open(&r->c, TR_TRAIN, &r->t);
    char path[4200] = "";
    int64_t step = -1;
    if (!rc && !restart) rc = ckpt_find_latest(r->dir, path, sizeof path, &step);
    if (!rc && step >= 0) {
        tr_restored got;
        /* the configuration: the checkpoint's own YAML, key by key (paths excluded: the inputs are compared by
         * content below); its job_hash covers the paths too, so it decides only for a checkpoint without YAML */
        if (!(rc = tr_restore(r->t, path, 0, &got))) {
            char diff[2048];
            if (got.job_yaml) {
                diff_keys(got.job_yaml, r->job_yaml, 0, diff, sizeof diff);
                if (diff[0])
                    rc = err_set(ERR_ARGS, "%s: this checkpoint was written with other values of keys that change "
                                 "the result; use its values, or start over with train --restart:%s", path, diff);
            } else if (got.job_hash != r->c.job_hash) {
                rc = err_set(ERR_ARGS, "%s: job_hash is %016llx, the job has %016llx: this checkpoint belongs to "
                             "another configuration and must not be resumed", path,
                             (unsigned long long)got.job_hash, (unsigned long long)r->c.job_hash);
            }
            if (!rc) rc = check_inputs(r, path, &got, 1);
            free(got.job_yaml);
        }
    }
    if (!rc) rc = check_data_keys(r);
    rc = dist_status(r->d, rc, "the set-up");
    /* train --restart: the old run moves aside only once the new inputs have been checked and loaded */
    if (!rc && lead && restart) rc = move_aside(r->dir);
    if (!rc && lead) rc = freeze(r); /* only now: the set-up succeeded */
    met_log *metrics = NULL;
    if (!rc && lead) rc = met_open(r->dir, tr_step(r->t), &metrics); /* one trainer per directory */
    if (!rc && lead) rc = ckpt_cleanup(r->dir);                      /* now every temporary is a dead writer's */
    /* keep_last may have changed since the last run (it does not change the result): apply it now too */
    if (!rc && lead && tr_step(r->t) > 0 && j->checkpoint.keep_last > 0)
        rc = ckpt_prune(r->dir, (int)j->checkpoint.keep_last);
    rc = dist_status(r->d, rc, "opening the metrics");
    const char *sj = getenv("SLURM_JOB_ID");
    if (!rc && sj) {
        const char *at = getenv("SLURM_ARRAY_TASK_ID"), *rcnt = getenv("SLURM_RESTART_COUNT");
        const char *node = getenv("SLURMD_NODENAME");
        log_info("slurm job %s%s%s, restart %s, node %s; segment %lld of this job", sj, at ? " array task " : "",
                 at ? at : "", rcnt ? rcnt : "0", node ? node : "?", (long long)met_segment_id(metrics));
    }
    tr_summary sum = {-1, -1, 0};
    if (!rc) {
        log_info("%s %s at step %lld of %lld", r->o->mode == JOB_RUN_TRAIN ? "training" : "resuming", j->job.name,
                 (long long)tr_step(r->t), (long long)tr_stop_step(r->t));
        rc = tr_train(r->t, metrics, &sum);
    }
    if (metrics) {
        char first[2048];
        snprintf(first, sizeof first, "%s", err_msg()); /* met_close's own error would replace it */
        int crc = met_close(metrics, rc == ERR_OK ? "done" : rc == ERR_INTERRUPTED ? "interrupted" : "error");
        if (!rc) {
            rc = crc;
        } else if (crc) {
            log_warn("%s", err_msg()); /* the second failure is reported too, the first stays the error */
            err_set(rc, "%s", first);
        }
    }
    if (!rc && lead) {
        printf("\n%s: done at step %lld (%.1f s of training)\n", j->job.name, (long long)tr_step(r->t), sum.elapsed);
        tr_memory_use mu;
        tr_memory(r->t, &mu);
        log_info("memory: weights %zu bytes (plan %zu); device high-water %zu bytes (plan %zu); host %zu bytes "
                 "(plan %zu)", mu.weights, mu.plan_weights, mu.device_peak, mu.plan_device, mu.host_peak, mu.plan_host);
        if (sum.acc_before >= 0) printf("  validation accuracy before training: %.3f\n", sum.acc_before);
        if (sum.acc_after >= 0) printf("  validation accuracy after training:  %.3f\n", sum.acc_after);
        printf("  checkpoints: %s/checkpoints/\n  metrics:     %s/metrics.h5\n", r->dir, r->dir);
        printf("  resume with: orpo-hpc resume %s\n  plot with:   /usr/bin/python3 tools/plot_metrics.py %s/metrics.h5 "
               "(needs h5py, matplotlib)\n", j->file,
               r->dir);
    }
    return rc;
}

int job_run(const job_config *j, const job_run_opts *o) {
    run *r = mem_calloc(1, sizeof *r, "job run");
    r->j = j;
    r->o = o;
    snprintf(r->dir, sizeof r->dir, "%s", j->job.output_dir);
    dist_env_info env;
    dist_env(&env);
    r->view = *j;
    if (o->mode != JOB_RUN_EVAL && o->mode != JOB_RUN_GENERATE) r->view.train.grad_accum *= env.world;
    r->job_yaml = job_run_yaml(&r->view);
    int rc = config_from_job(r);
    if (!rc) rc = fs_mkdirs(r->dir);
    if (!rc && o->mode != JOB_RUN_EVAL && o->mode != JOB_RUN_GENERATE) {
        dist_opts dopt = {j->runtime.data_parallel, j->runtime.dist_timeout_s, r->dir,
                          j->runtime.device == JOB_DEVICE_CPU ? 0 : j->runtime.device == JOB_DEVICE_CUDA ? 1 : -1};
        rc = dist_open(&dopt, &r->d);
        r->c.dist = r->d;
    }
    int lockfd = -1;
    if (!rc && o->mode != JOB_RUN_EVAL && o->mode != JOB_RUN_GENERATE && dist_rank(r->d) == 0)
        rc = lock_dir(r->dir, &lockfd);
    if (r->d) rc = dist_status(r->d, rc, "locking the output directory");
    if (!rc) rc = o->mode == JOB_RUN_GENERATE ? run_generate(r) : o->mode == JOB_RUN_EVAL ? run_eval(r) : run_train(r);
    tr_close(r->t);
    free(r->glr);
    free(r->job_yaml);
    if (lockfd >= 0) close(lockfd);
    dist_close(r->d, rc); /* a failure the other ranks do not share ends them all here (and does not return) */
    free(r);
    return rc;
}
