/* job — the YAML job file: one table of keys, a loader that reports every problem, and the
 * effective configuration (typed, paths resolved) that the train/resume/eval/plan commands use.
 *
 * The key table in job_keys.c is the ONE source of truth: the loader, `validate --print-schema`
 * (schemas/job.schema.json), `validate --print-keys` (the table in docs/jobs.md), the YAML
 * writer and the result hash all walk it.
 *
 *   job_load(path, ov, nov, require_files, out, rep)   read + validate a job file; ERR_OK when no error
 *   job_load_string(text, len, path, ov, nov, req, out, rep)  the same on a buffer (path names it, resolves)
 *   job_free(j)                          free a job_config (safe on a zeroed or failed one)
 *   job_parse_set_args(&argc, argv, &ov, &nov)   strip `--set k=v` / `--set=k=v` from argv
 *   job_free_overrides(ov, nov)          free what job_parse_set_args allocated
 *   job_print_schema(fp)                 the JSON Schema (draft 2020-12) of a job file
 *   job_print_keys_markdown(fp)          the key reference table of docs/jobs.md
 *   job_write_yaml(j, fp)                the effective (resolved) configuration as a YAML job file
 *   job_hash(j)                          stable 64-bit FNV-1a hash of the result-changing keys
 *   job_keys(&n)                         the key table; job_find_key(path) -> index or -1
 *   job_key_result_changing(i)           1 when key i enters job_hash
 *   job_enum_name(key_index, value)      the text of an enum value ("nf4", "cosine", ...)
 *   job_lr_for_group(j, group)           train.lr_groups[group] or train.lr
 *   job_report_init/free(rep)            a diagnostics collector
 *   job_report_add(rep, sev, file, line, col, key, fmt, ...)   append one diagnostic
 *   job_report_print(rep, fp)            "FILE:LINE:COL: key.path: message" lines, in file order
 *   job_report_errors(rep) / job_report_warnings(rep)   counts
 */
#ifndef ORPO_JOB_H
#define ORPO_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/err.h"

/* ---- diagnostics -------------------------------------------------------------------- */
enum { JOB_ERROR = 0, JOB_WARNING = 1 };

typedef struct job_diag {
    int severity;     /* JOB_ERROR or JOB_WARNING */
    char *file;       /* job file path as given, or "--set key=value" */
    int line, col;    /* 1-based; 0 when the place is not a file position (then printed "FILE: ...") */
    char *key;        /* "lora.rank"; "" when the problem is not about one key (syntax, unreadable) */
    char *msg;
} job_diag;

typedef struct job_report {
    job_diag *d;
    int n, cap;
    int nerr, nwarn;
} job_report;

void job_report_init(job_report *rep);
void job_report_free(job_report *rep);
void job_report_add(job_report *rep, int severity, const char *file, int line, int col, const char *key,
                    const char *fmt, ...) ERR_PRINTF(7, 8);
void job_report_print(const job_report *rep, FILE *fp);
int job_report_errors(const job_report *rep);
int job_report_warnings(const job_report *rep);

/* ---- the key table ------------------------------------------------------------------- */
enum {
    JOB_T_STR,    /* string */
    JOB_T_PATH,   /* string, a file system path resolved against the job file's directory */
    JOB_T_INT,    /* int64_t */
    JOB_T_FLOAT,  /* double */
    JOB_T_BOOL,   /* int 0/1 */
    JOB_T_ENUM,   /* int index into values[] */
    JOB_T_LIST,   /* job_list of strings from values[] (or prefix + prefix_values[]) */
    JOB_T_MAP     /* job_lr_groups: name from values[] -> number within the range */
};

enum {
    JOB_K_REQUIRED = 1,  /* no default; must be in the file or in --set */
    JOB_K_RESULT = 2,    /* changes the training result: enters job_hash */
    JOB_K_FILE = 4,      /* a path that must exist (warning, or error with require_files) */
    JOB_K_MIN_EXCL = 8,  /* min is exclusive */
    JOB_K_MAX_EXCL = 16, /* max is exclusive */
    JOB_K_HAS_MIN = 32,
    JOB_K_HAS_MAX = 64
};

typedef struct job_key {
    const char *path;                  /* "lora.rank" */
    int type;                          /* JOB_T_* */
    int flags;                         /* JOB_K_* */
    const char *def;                   /* default as text (the --set syntax); NULL when required */
    double min, max;                   /* range of numbers (and of map values) */
    const char *const *values;         /* enum / list item / map name values, NULL-terminated */
    const char *prefix;                /* list items may also be prefix + one of prefix_values */
    const char *const *prefix_values;
    size_t off;                        /* offsetof(job_config, field) */
    const char *doc;                   /* one line: what it means */
} job_key;

/* ---- the effective configuration --------------------------------------------------------- */
enum { JOB_QUANT_NF4, JOB_QUANT_BF16, JOB_QUANT_FP32 };
enum { JOB_QSCOPE_DECODER, JOB_QSCOPE_ALL_LINEAR };
enum { JOB_SCHED_COSINE, JOB_SCHED_CONSTANT };
enum { JOB_NLL_ALL, JOB_NLL_ANSWER };
enum { JOB_DEVICE_AUTO, JOB_DEVICE_CPU, JOB_DEVICE_CUDA };
enum { JOB_DP_AUTO, JOB_DP_NONE, JOB_DP_NCCL, JOB_DP_MPI };
enum { JOB_PREC_AUTO, JOB_PREC_FP32, JOB_PREC_BF16 };

typedef struct job_list {
    int n;
    char **v;
} job_list;

typedef struct job_lr_groups {
    int n;
    char **name;
    double *lr;
} job_lr_groups;

enum { JOB_FROM_DEFAULT = 0, JOB_FROM_FILE = 1, JOB_FROM_SET = 2 };

typedef struct job_pos {
    int line, col; /* 1-based place of the value in the job file (0 unless from == JOB_FROM_FILE) */
    int from;      /* JOB_FROM_DEFAULT, JOB_FROM_FILE, JOB_FROM_SET */
} job_pos;

#define JOB_NKEYS 46

typedef struct job_config {
    char *file;     /* the job file path as given */
    char *dir;      /* absolute directory of the job file (relative paths in it resolve here) */
    struct { char *name; char *output_dir; } job;
    struct { char *path; int quantization; int quant_scope; } model;
    struct {
        int64_t rank;
        double alpha, dropout;
        job_list targets;
        int train_new_token_embeddings, use_rslora;
        int64_t vision_layers;
    } lora;
    struct { char *path; double val_fraction; int64_t max_pairs, seed, max_tokens; } data;
    struct {
        int64_t epochs, max_steps, micro_batch_pairs, grad_accum;
        double lr;
        int schedule;
        int64_t warmup_steps;
        double weight_decay, max_grad_norm, orpo_beta;
        int gradient_checkpointing;
        int64_t seed;
        int nll;
        job_list full_modules;
        job_lr_groups lr_groups;
    } train;
    struct { int64_t every_steps, keep_last; } checkpoint;
    struct { int64_t every_steps, max_pairs, samples; } eval;
    struct {
        int device;
        double gpu_memory_gb;
        int precision;        /* JOB_PREC_*: auto = fp32 on the CPU, bf16 on CUDA */
        int attention;        /* AFZ_AUTO, AFZ_CUDNN, AFZ_KERNELS (backend/attn_fused.h) */
        char *vision_cache;   /* NULL when not set */
        int64_t threads;
        int data_parallel;
        double log_every_s, dist_timeout_s;
    } runtime;
    job_pos pos[JOB_NKEYS]; /* where each key's value came from, indexed like job_keys() */
} job_config;

typedef struct job_override {
    const char *key;
    const char *value;
} job_override;

const job_key *job_keys(int *n);
int job_find_key(const char *path);
int job_key_result_changing(int i);
const char *job_enum_name(int key_index, int value);

int job_load(const char *path, const job_override *ov, int nov, int require_files, job_config *out,
             job_report *rep);
int job_load_string(const char *text, size_t len, const char *path, const job_override *ov, int nov,
                    int require_files, job_config *out, job_report *rep);
void job_free(job_config *j);

int job_parse_set_args(int *argc, char **argv, job_override **ov, int *nov);
void job_free_overrides(job_override *ov, int nov);

int job_print_schema(FILE *fp);
int job_print_keys_markdown(FILE *fp);
int job_write_yaml(const job_config *j, FILE *fp);
uint64_t job_hash(const job_config *j);
double job_lr_for_group(const job_config *j, const char *group);

#endif
