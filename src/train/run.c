/* run — train / resume / eval of one job on the CPU backend. Read run_job top to bottom. */
#include "train/run.h"

#include <cblas.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "backend/device.h"
#include "data/import.h"
#include "data/loader.h"
#include "data/tok.h"
#include "io/atomic.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "train/adamw.h"
#include "train/ckpt.h"
#include "train/metrics.h"
#include "train/orpo.h"
#include "train/sched.h"

/* ---- signals ----------------------------------------------------------------------------------- */

static volatile sig_atomic_t g_stop, g_sigint;

static void on_signal(int sig) {
    if (sig == SIGINT && g_sigint) _exit(130); /* a second Ctrl-C: abort at once */
    if (sig == SIGINT) g_sigint = 1;
    g_stop = sig;
}

void run_signal_install(void) {
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

int run_stop_requested(void) { return (int)g_stop; }

void run_opts_default(run_opts *o) {
    memset(o, 0, sizeof *o);
    o->mode = RUN_RESUME;
}

/* ---- the runner --------------------------------------------------------------------------------- */

#define MAX_GROUPS 8

typedef struct runner {
    const job_config *j;
    char ckdir[4096];         /* job.output_dir */
    llava_model m;
    llava_trainer t;
    tok *tk;
    ds_model_ref ref;
    ds_meta meta;
    ldr *train, *val;
    int64_t n_train, n_val;
    adamw_opt opt;
    adamw_group groups[MAX_GROUPS];
    int ng;
    adamw_tensor *at;
    float *mom;               /* m then v, both [nstore] */
    ckpt_tensor *ck;          /* params, m, v views for checkpoints: 3 * ntensors */
    char (*ck_names)[CKPT_MAX_NAME];
    lt_pair *lp;              /* one micro-batch */
    float *dlogp;
    orpo_pair *vp;            /* eval: per-pair sums */
    int64_t step, total_steps, stop_step, steps_per_epoch;
    int64_t samples, tokens, metrics_rows;
    double elapsed;
    ldr_cursor cursor;
    orpo_config oc;
    uint64_t job_hash, model_hash, data_hash;
    char *job_yaml;
    met_log *metrics;
} runner;

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static double mem_peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* the job's LoRA and training keys as a trainer spec */
static int spec_from_job(const job_config *j, lt_spec *s) {
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

/* largest anyres tile count of the model */
static int max_tiles(const llava_config *c) {
    int m = 1;
    for (int i = 0; i < c->anyres.n_pinpoints; i++) {
        int t = 1 + (c->anyres.pinpoints[i][0] / c->anyres.tile) * (c->anyres.pinpoints[i][1] / c->anyres.tile);
        if (t > m) m = t;
    }
    return m;
}

/* ---- frozen configuration ------------------------------------------------------------------------ */

static char *yaml_of(const job_config *j) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
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

/* The first start freezes the configuration into output_dir/job.yaml; later starts must agree with it on
 * every key that changes the result. */
static int freeze_or_compare(runner *r) {
    char path[4200];
    snprintf(path, sizeof path, "%s/job.yaml", r->ckdir);
    r->job_yaml = yaml_of(r->j);
    if (!fs_exists(path)) return atomic_write_file(path, r->job_yaml, strlen(r->job_yaml));
    char *old = NULL;
    size_t n = 0;
    int rc = fs_read_all(path, &old, &n);
    if (rc) return rc;
    int nk = 0;
    const job_key *keys = job_keys(&nk);
    char diff[2048] = "";
    for (int i = 0; i < nk; i++) {
        if (!job_key_result_changing(i)) continue;
        char a[512], b[512];
        const char *va = yaml_value(old, keys[i].path, a, sizeof a), *vb = yaml_value(r->job_yaml, keys[i].path, b, sizeof b);
        if ((va == NULL) != (vb == NULL) || (va && strcmp(va, vb)))
            snprintf(diff + strlen(diff), sizeof diff - strlen(diff), "\n  %.64s: %.200s then, %.200s now",
                     keys[i].path, va ? va : "(absent)", vb ? vb : "(absent)");
    }
    free(old);
    if (diff[0])
        return err_set(ERR_ARGS, "%s: this job was started (%s) with other values of keys that change the "
                       "result; use the old values, or start over with train --restart:%s", r->j->file, path, diff);
    return ERR_OK;
}

/* ---- set-up ------------------------------------------------------------------------------------ */

static int hashes(runner *r) {
    char *cfg = NULL;
    size_t n = 0;
    int rc = mh5_read_blob(r->j->model.path, "source/config.json", &cfg, &n);
    if (rc) return rc;
    r->model_hash = fnv1a(0xcbf29ce484222325ull, cfg, n);
    int64_t sz = 0;
    fs_size(r->j->model.path, &sz);
    r->model_hash = fnv1a(r->model_hash, &sz, sizeof sz);
    free(cfg);
    r->data_hash = fnv1a(0xcbf29ce484222325ull, &r->meta.model.tok_hash, sizeof r->meta.model.tok_hash);
    r->data_hash = fnv1a(r->data_hash, &r->meta.n_pairs, sizeof r->meta.n_pairs);
    r->data_hash = fnv1a(r->data_hash, &r->meta.n_tokens, sizeof r->meta.n_tokens);
    r->data_hash = fnv1a(r->data_hash, &r->meta.n_image_bytes, sizeof r->meta.n_image_bytes);
    r->job_hash = job_hash(r->j);
    return ERR_OK;
}

static int setup(runner *r) {
    const job_config *j = r->j;
    int rc;
    device_info dev;
    static const char *devname[] = {"auto", "cpu", "cuda"};
    if ((rc = device_select(devname[j->runtime.device], &dev))) return rc;
    if (dev.kind == DEVICE_CUDA) {
        if (j->runtime.device == JOB_DEVICE_CUDA)
            return err_set(ERR_ARGS, "runtime.device: cuda: the GPU training backend is not built yet in this "
                           "orpo-hpc; set runtime.device: cpu (or auto, which uses the CPU)");
        log_info("runtime.device auto: a GPU is present but the GPU training backend is not built yet; using the CPU");
    }
    if (j->runtime.threads > 0) openblas_set_num_threads((int)j->runtime.threads);
    if ((rc = mh5_load(j->model.path, &r->m))) return rc;
    if ((rc = mh5_data_ref(j->model.path, &r->ref, &r->tk))) return rc;
    /* data: its metadata, the loaders of both splits */
    ds_file *d = NULL;
    if ((rc = ds_open(j->data.path, &d))) return rc;
    r->meta = *ds_meta_of(d);
    ds_close(d);
    if ((rc = ds_check_model(&r->meta, &r->ref, j->data.path))) return rc;
    if ((rc = hashes(r))) return rc;
    const int64_t accum = j->train.grad_accum, micro = j->train.micro_batch_pairs;
    ldr_opts lo;
    ldr_opts_default(&lo);
    lo.batch_pairs = (int)(micro * accum); /* one optimiser step; split into micro-batches below */
    lo.seed = (uint64_t)j->train.seed;
    lo.split = DS_TRAIN;
    if ((rc = ldr_open(j->data.path, &r->ref, &lo, &r->train))) return rc;
    lo.split = DS_VAL;
    lo.batch_pairs = (int)micro;
    lo.shuffle = 0;
    if (r->meta.n_val > 0 && (rc = ldr_open(j->data.path, &r->ref, &lo, &r->val))) return rc;
    r->n_train = ldr_num_pairs(r->train);
    r->n_val = r->val ? ldr_num_pairs(r->val) : 0;
    if (r->n_train == 0) return err_set(ERR_DATA, "%s: no training pairs", j->data.path);
    if (j->data.max_pairs > 0 && r->n_train > j->data.max_pairs) r->n_train = j->data.max_pairs;
    r->steps_per_epoch = (r->n_train + micro * accum - 1) / (micro * accum);
    r->total_steps = r->steps_per_epoch * j->train.epochs;
    r->stop_step = j->train.max_steps > 0 && j->train.max_steps < r->total_steps ? j->train.max_steps : r->total_steps;
    /* trainer, sized once from the largest pair in data.h5 */
    lt_spec sp;
    if ((rc = spec_from_job(j, &sp))) return rc;
    if ((rc = lt_init(&r->t, &r->m, &sp))) return rc;
    const int64_t per_pair = r->meta.max_prefix_len + r->meta.max_n_image_tokens + 2 * r->meta.max_answer_len + 2;
    if ((rc = lt_plan(&r->t, micro * per_pair, (int)micro * max_tiles(&r->m.cfg), micro * per_pair))) return rc;
    r->lp = calloc((size_t)micro, sizeof *r->lp);
    r->dlogp = malloc(sizeof(float) * (size_t)(micro * per_pair));
    r->vp = calloc((size_t)(r->n_val > 0 ? r->n_val : 1), sizeof *r->vp);
    r->oc.beta = j->train.orpo_beta;
    r->oc.nll = j->train.nll == JOB_NLL_ALL ? ORPO_NLL_ALL : ORPO_NLL_ANSWER;
    /* optimiser: one group per tensor group, with its learning rate */
    int nt = lt_tensor_count(&r->t);
    r->at = calloc((size_t)(nt ? nt : 1), sizeof *r->at);
    r->mom = calloc((size_t)(2 * r->t.nstore + 1), sizeof(float));
    r->ck = calloc((size_t)(3 * nt + 1), sizeof *r->ck);
    r->ck_names = calloc((size_t)(nt + 1), sizeof *r->ck_names);
    adamw_init(&r->opt);
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&r->t, i);
        r->at[i] = (adamw_tensor){ti->name, ti->data, ti->grad, r->mom + off, r->mom + r->t.nstore + off, ti->numel};
        snprintf(r->ck_names[i], CKPT_MAX_NAME, "%s", ti->name);
        for (char *c = r->ck_names[i]; *c; c++)
            if (*c == '/') *c = ':';
        for (int k = 0; k < 3; k++) {
            ckpt_tensor *ct = &r->ck[k * nt + i];
            ct->name = r->ck_names[i];
            ct->group = ti->group;
            ct->data = k == 0 ? ti->data : (k == 1 ? r->at[i].m : r->at[i].v);
            ct->numel = ti->numel;
            ct->ndim = ti->ndim;
            ct->shape[0] = ti->shape[0];
            ct->shape[1] = ti->shape[1];
        }
        off += ti->numel;
    }
    /* tensors are grouped contiguously in the trainer's layout: one adamw group per run of the same group */
    r->ng = 0;
    for (int i = 0; i < nt; i++) {
        const char *gname = lt_tensor(&r->t, i)->group;
        if (r->ng == 0 || strcmp(r->groups[r->ng - 1].name, gname)) {
            int k = adamw_group_index(r->groups, r->ng, gname);
            if (k >= 0) return err_set(ERR_INTERNAL, "trainable tensors of group %s are not contiguous", gname);
            if (r->ng == MAX_GROUPS) return err_set(ERR_INTERNAL, "too many parameter groups");
            r->groups[r->ng++] = (adamw_group){gname, job_lr_for_group(j, gname), j->train.weight_decay, &r->at[i], 0};
        }
        r->groups[r->ng - 1].nt++;
    }
    char desc[512];
    llava_config_describe(&r->m.cfg, desc, sizeof desc);
    log_info("model %s: %s", j->model.path, desc);
    log_info("data %s: %lld training pairs, %lld validation pairs; %lld steps per epoch, %lld epochs (%lld steps), "
             "stopping at step %lld", j->data.path, (long long)r->n_train, (long long)r->n_val,
             (long long)r->steps_per_epoch, (long long)j->train.epochs, (long long)r->total_steps, (long long)r->stop_step);
    log_info("trainable: %lld values in %d tensors (%d groups); device cpu", (long long)r->t.nstore, nt, r->ng);
    return ERR_OK;
}

static void teardown(runner *r) {
    ldr_close(r->train);
    ldr_close(r->val);
    lt_free(&r->t);
    llava_model_free(&r->m);
    tok_free(r->tk);
    free(r->at);
    free(r->mom);
    free(r->ck);
    free(r->ck_names);
    free(r->lp);
    free(r->dlogp);
    free(r->vp);
    free(r->job_yaml);
}

/* ---- checkpoints ----------------------------------------------------------------------------- */

static void fill_ckpt(runner *r, ckpt_state *s) {
    int nt = lt_tensor_count(&r->t);
    memset(s, 0, sizeof *s);
    s->step = r->step;
    s->epoch = r->cursor.epoch;
    s->cursor_pos = r->cursor.pos;
    s->perm_seed = (uint64_t)r->j->train.seed;
    s->rng_seed = (uint64_t)r->j->train.seed;
    s->metrics_rows = r->metrics_rows;
    s->sched_lr_factor = sched_factor(r->j->train.schedule == JOB_SCHED_COSINE ? SCHED_COSINE : SCHED_CONSTANT,
                                      r->step, r->j->train.warmup_steps, r->total_steps);
    s->adam_step = r->opt.step;
    s->samples_seen = r->samples;
    s->tokens_seen = r->tokens;
    s->elapsed_s = r->elapsed;
    s->world_size = 1;
    s->job_hash = r->job_hash;
    s->model_hash = r->model_hash;
    s->data_hash = r->data_hash;
    s->job_yaml = r->job_yaml;
    s->params = r->ck;
    s->adam_m = r->ck + nt;
    s->adam_v = r->ck + 2 * nt;
    s->ntensors = nt;
}

static int save_checkpoint(runner *r) {
    ckpt_state s;
    fill_ckpt(r, &s);
    double t0 = log_now();
    int rc = ckpt_write(r->ckdir, &s);
    if (!rc) rc = met_checkpoint(r->metrics, r->step);
    if (!rc && r->j->checkpoint.keep_last > 0) rc = ckpt_prune(r->ckdir, (int)r->j->checkpoint.keep_last);
    if (!rc) log_info("checkpoint step %lld written in %.2f s", (long long)r->step, log_now() - t0);
    return rc;
}

/* newest valid checkpoint -> trainer, optimiser, cursor, counters; 0 steps when there is none */
static int restore(runner *r, const char *explicit_path) {
    char path[4200];
    int64_t step = -1;
    int rc;
    if (explicit_path) {
        snprintf(path, sizeof path, "%s", explicit_path);
        if ((rc = ckpt_verify(path, &step))) return rc;
    } else if ((rc = ckpt_find_latest(r->ckdir, path, sizeof path, &step))) {
        return rc;
    }
    if (step < 0) return ERR_OK;
    ckpt_state s;
    fill_ckpt(r, &s);
    if ((rc = ckpt_read(path, &s))) return rc;
    free(s.loaded_yaml);
    r->step = s.step;
    r->cursor.epoch = s.epoch;
    r->cursor.pos = s.cursor_pos;
    r->metrics_rows = s.metrics_rows;
    r->opt.step = s.adam_step;
    r->samples = s.samples_seen;
    r->tokens = s.tokens_seen;
    r->elapsed = s.elapsed_s;
    if ((rc = ldr_seek(r->train, r->cursor))) return rc;
    log_info("resuming from %s (step %lld, epoch %lld, pair %lld)", path, (long long)r->step, (long long)r->cursor.epoch,
             (long long)r->cursor.pos);
    return ERR_OK;
}

/* ---- one optimiser step --------------------------------------------------------------------------- */

static int nll_tokens_of(const runner *r, const ldr_pair *p) {
    if (r->oc.nll != ORPO_NLL_ALL) return 0;
    return (p->prefix_len - 1 - p->n_image_tokens) + p->chosen_len;
}

static void to_lt_pair(const ldr_pair *p, lt_pair *q) {
    *q = (lt_pair){p->pixels, p->n_patches, p->height, p->width, p->prefix, p->prefix_len,
                   p->chosen, p->rejected, p->chosen_len, p->rejected_len};
}

static int train_step(runner *r, met_train *row) {
    const job_config *j = r->j;
    const ldr_batch *b;
    double t0 = log_now();
    int rc = ldr_next(r->train, &b);
    if (rc) return rc;
    orpo_norm norm = {b->n, 0};
    for (int i = 0; i < b->n; i++) norm.nll_tokens += nll_tokens_of(r, &b->pairs[i]);
    orpo_accum acc;
    orpo_accum_init(&acc);
    lt_zero_grads(&r->t);
    int64_t toks = 0;
    for (int off = 0; off < b->n; off += (int)j->train.micro_batch_pairs) {
        int n = b->n - off < (int)j->train.micro_batch_pairs ? b->n - off : (int)j->train.micro_batch_pairs;
        for (int i = 0; i < n; i++) to_lt_pair(&b->pairs[off + i], &r->lp[i]);
        lt_batch lb = {r->lp, n, (uint32_t)r->step, 0};
        lt_fwd fw;
        if ((rc = lt_forward(&r->t, &lb, &fw))) return rc;
        orpo_batch ob = {fw.nrows, fw.logp, fw.role, fw.pair, n};
        if ((rc = orpo_tokens(&r->oc, &ob, &norm, &acc, r->dlogp))) return rc;
        if ((rc = lt_backward(&r->t, r->dlogp))) return rc;
        toks += fw.ntok;
    }
    orpo_metrics m;
    if ((rc = orpo_finish(&acc, &norm, &m))) return rc;
    double gnorm = adamw_clip(r->groups, r->ng, j->train.max_grad_norm);
    int kind = j->train.schedule == JOB_SCHED_COSINE ? SCHED_COSINE : SCHED_CONSTANT;
    double factor = sched_factor(kind, r->step, j->train.warmup_steps, r->total_steps);
    if ((rc = adamw_step(&r->opt, r->groups, r->ng, factor))) return rc;
    r->step++;
    r->cursor = b->next;
    r->samples += b->n;
    r->tokens += toks;
    double dt = log_now() - t0;
    r->elapsed += dt;
    memset(row, 0, sizeof *row);
    row->step = r->step;
    row->epoch = (double)r->samples / (double)r->n_train; /* fractional epochs (pairs seen / pairs per epoch) */
    row->samples = r->samples;
    row->tokens = r->tokens;
    row->loss = m.loss;
    row->nll_loss = m.nll_loss;
    row->log_odds_ratio = m.log_odds_ratio;
    row->log_odds_chosen = m.log_odds_chosen;
    row->chosen_logps = m.chosen_logps;
    row->rejected_logps = m.rejected_logps;
    row->reward_accuracy = m.reward_accuracy;
    row->reward_margin = m.reward_margin;
    row->lr = j->train.lr * factor;
    row->grad_norm = gnorm;
    row->step_time = dt;
    row->tokens_per_s = (double)toks / dt;
    row->mem_peak = (int64_t)(mem_peak_mb() * 1048576.0);
    return ERR_OK;
}

/* ---- validation -------------------------------------------------------------------------------- */

static int evaluate(runner *r, met_val *row, int64_t *pairs) {
    const job_config *j = r->j;
    memset(row, 0, sizeof *row);
    row->step = r->step;
    if (!r->val) return ERR_OK;
    int64_t limit = j->eval.max_pairs > 0 && j->eval.max_pairs < r->n_val ? j->eval.max_pairs : r->n_val;
    ldr_cursor c0 = {0, 0};
    int rc = ldr_seek(r->val, c0);
    if (rc) return rc;
    int64_t done = 0, nll_n = 0;
    double nll_sum = 0;
    while (done < limit) {
        const ldr_batch *b;
        if ((rc = ldr_next(r->val, &b))) return rc;
        int n = b->n;
        if (n > limit - done) n = (int)(limit - done);
        for (int i = 0; i < n; i++) to_lt_pair(&b->pairs[i], &r->lp[i]);
        lt_batch lb = {r->lp, n, (uint32_t)r->step, 1};
        lt_fwd fw;
        if ((rc = lt_forward(&r->t, &lb, &fw))) return rc;
        for (int64_t k = 0; k < fw.nrows; k++) {
            orpo_pair *p = &r->vp[done + fw.pair[k]];
            if (fw.role[k] & ORPO_TOK_CHOSEN) p->sum_w += fw.logp[k], p->n_w++;
            if (fw.role[k] & ORPO_TOK_REJECTED) p->sum_l += fw.logp[k], p->n_l++;
            if (fw.role[k] & ORPO_TOK_NLL) nll_sum += fw.logp[k], nll_n++;
        }
        done += n;
        if (b->n < (int)j->train.micro_batch_pairs && done < limit) break; /* end of the split */
    }
    *pairs = done;
    if (done == 0) return ERR_OK;
    orpo_norm norm = {done, nll_n};
    orpo_accum acc;
    orpo_accum_init(&acc);
    for (int64_t off = 0; off < done; off += ORPO_MAX_PAIRS) {
        int n = done - off < ORPO_MAX_PAIRS ? (int)(done - off) : ORPO_MAX_PAIRS;
        orpo_pair_grad g[ORPO_MAX_PAIRS];
        double dn;
        if ((rc = orpo_pairs(&r->oc, r->vp + off, n, off == 0 ? nll_sum : 0.0, off == 0 ? nll_n : 0, &norm, &acc, g, &dn)))
            return rc;
    }
    orpo_metrics m;
    if ((rc = orpo_finish(&acc, &norm, &m))) return rc;
    memset(r->vp, 0, sizeof *r->vp * (size_t)done);
    row->loss = m.loss;
    row->nll_loss = m.nll_loss;
    row->accuracy = m.reward_accuracy;
    row->chosen_logps = m.chosen_logps;
    row->rejected_logps = m.rejected_logps;
    return ERR_OK;
}


/* text of some ids: the prompt without its image tokens, or an answer */
static char *decode(runner *r, const int32_t *ids, int32_t n) {
    int32_t *tmp = malloc(sizeof(int32_t) * (size_t)(n + 1));
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] != r->m.cfg.image_token) tmp[k++] = ids[i];
    char *s = NULL;
    size_t len = 0;
    if (tok_decode(r->tk, tmp, (size_t)k, 0, &s, &len)) s = strdup("(undecodable)");
    free(tmp);
    return s;
}

/* the first eval.samples validation pairs, as text, into the samples table (no generation yet: answer empty) */
static int log_samples(runner *r) {
    if (!r->val || r->j->eval.samples <= 0) return ERR_OK;
    ldr_cursor c0 = {0, 0};
    int rc = ldr_seek(r->val, c0);
    const ldr_batch *b;
    if (!rc) rc = ldr_next(r->val, &b);
    for (int i = 0; !rc && i < b->n && i < r->j->eval.samples; i++) {
        const ldr_pair *p = &b->pairs[i];
        char *pr = decode(r, p->prefix, p->prefix_len), *ch = decode(r, p->chosen, p->chosen_len);
        char *rj = decode(r, p->rejected, p->rejected_len);
        rc = met_sample(r->metrics, r->step, pr, ch, rj, "");
        free(pr);
        free(ch);
        free(rj);
    }
    return rc;
}

static int validate_now(runner *r, double *acc_out) {
    met_val vr;
    int64_t n = 0;
    double t0 = log_now();
    int rc = evaluate(r, &vr, &n);
    if (rc || n == 0) return rc;
    log_info("validation at step %lld: %lld pairs, accuracy %.3f, loss %.4f, nll %.4f, chosen %.3f, rejected %.3f "
             "(%.1f s)", (long long)r->step, (long long)n, vr.accuracy, vr.loss, vr.nll_loss, vr.chosen_logps,
             vr.rejected_logps, log_now() - t0);
    if (acc_out) *acc_out = vr.accuracy;
    if (r->metrics && (rc = met_val_row(r->metrics, &vr))) return rc;
    return log_samples(r);
}

static void fmt_eta(char *buf, size_t n, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

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
    snprintf(aside, sizeof aside, "%s/restart-%04d%02d%02d-%02d%02d%02d", dir, tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
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

static int train_loop(runner *r, double *acc_before, double *acc_after) {
    const job_config *j = r->j;
    int rc = ERR_OK;
    if (r->step == 0 && j->eval.every_steps > 0 && (rc = validate_now(r, acc_before))) return rc;
    double t_start = log_now();
    int64_t first = r->step;
    while (r->step < r->stop_step) {
        if (run_stop_requested()) {
            log_warn("signal %d: checkpointing at step %lld and exiting with 75 (requeue me)", run_stop_requested(),
                     (long long)r->step);
            if ((rc = save_checkpoint(r))) return rc;
            return ERR_INTERRUPTED;
        }
        met_train row;
        if ((rc = train_step(r, &row))) return rc;
        if ((rc = met_train_row(r->metrics, &row))) return rc;
        r->metrics_rows = met_train_rows(r->metrics);
        double per = (log_now() - t_start) / (double)(r->step - first);
        char eta[32];
        fmt_eta(eta, sizeof eta, per * (double)(r->stop_step - r->step));
        log_info("step %lld/%lld epoch %.2f loss %.4f nll %.4f acc %.2f margin %+.4f lr %.2e |g| %.3f %.2f s/step "
                 "ETA %s", (long long)r->step, (long long)r->stop_step, row.epoch, row.loss, row.nll_loss,
                 row.reward_accuracy, row.reward_margin, row.lr, row.grad_norm, row.step_time, eta);
        int last = r->step == r->stop_step;
        /* every eval.every_steps steps, and always at the end (every_steps 0: only at the end) */
        if (((j->eval.every_steps > 0 && r->step % j->eval.every_steps == 0) || last) &&
            (rc = validate_now(r, acc_after)))
            return rc;
        if ((j->checkpoint.every_steps > 0 && r->step % j->checkpoint.every_steps == 0) || last)
            if ((rc = save_checkpoint(r))) return rc;
    }
    return ERR_OK;
}

int run_job(const job_config *j, const run_opts *o) {
    runner *r = calloc(1, sizeof *r);
    r->j = j;
    snprintf(r->ckdir, sizeof r->ckdir, "%s", j->job.output_dir);
    int rc = fs_mkdirs(r->ckdir);
    int lockfd = -1;
    if (!rc && o->mode != RUN_EVAL) rc = lock_dir(r->ckdir, &lockfd);
    char probe[4200];
    int64_t existing = -1;
    if (!rc && o->mode == RUN_TRAIN) {
        snprintf(probe, sizeof probe, "%s/checkpoints", r->ckdir);
        int n = 0;
        int64_t steps[1];
        if (fs_exists(probe) && ckpt_list(r->ckdir, steps, 1, &n) == ERR_OK && n > 0) {
            if (!o->restart)
                rc = err_set(ERR_ARGS, "%s holds checkpoints already: continue with `orpo-hpc resume %s`, or start "
                             "over with `orpo-hpc train --restart %s` (the old ones are kept aside)", probe, j->file, j->file);
            else
                rc = move_aside(r->ckdir);
        } else if (o->restart) {
            rc = move_aside(r->ckdir);
        }
    }
    if (!rc && o->mode != RUN_EVAL) rc = freeze_or_compare(r);
    if (!rc) rc = setup(r);
    if (!rc && o->mode == RUN_EVAL) {
        rc = restore(r, o->checkpoint);
        if (!rc) {
            met_val vr;
            int64_t n = 0;
            rc = evaluate(r, &vr, &n);
            if (!rc)
                printf("eval %s at step %lld: %lld validation pairs\n  accuracy %.4f\n  loss %.6f\n  nll_loss %.6f\n"
                       "  chosen_logps %.6f\n  rejected_logps %.6f\n", j->job.name, (long long)r->step, (long long)n,
                       vr.accuracy, vr.loss, vr.nll_loss, vr.chosen_logps, vr.rejected_logps);
        }
        teardown(r);
        free(r);
        return rc;
    }
    if (!rc) rc = restore(r, NULL);
    (void)existing;
    if (!rc) rc = met_open(r->ckdir, r->step, &r->metrics); /* takes the job's lock: one trainer per directory */
    if (!rc) rc = ckpt_cleanup(r->ckdir);                    /* now every temporary is a dead writer's */
    /* keep_last may have changed since the last run (it does not change the result): apply it now too */
    if (!rc && r->step > 0 && j->checkpoint.keep_last > 0) rc = ckpt_prune(r->ckdir, (int)j->checkpoint.keep_last);
    const char *sj = getenv("SLURM_JOB_ID");
    if (!rc && sj) {
        const char *at = getenv("SLURM_ARRAY_TASK_ID"), *rcnt = getenv("SLURM_RESTART_COUNT");
        const char *node = getenv("SLURMD_NODENAME");
        log_info("slurm job %s%s%s, restart %s, node %s; segment %lld of this job", sj, at ? " array task " : "",
                 at ? at : "", rcnt ? rcnt : "0", node ? node : "?", (long long)met_segment_id(r->metrics));
    }
    double acc0 = -1, acc1 = -1;
    if (!rc) {
        log_info("%s %s at step %lld of %lld", o->mode == RUN_TRAIN ? "training" : "resuming", j->job.name,
                 (long long)r->step, (long long)r->stop_step);
        rc = train_loop(r, &acc0, &acc1);
    }
    if (r->metrics) {
        char first[2048];
        snprintf(first, sizeof first, "%s", err_msg()); /* met_close's own error would replace it */
        int crc = met_close(r->metrics, rc == ERR_OK ? "done" : rc == ERR_INTERRUPTED ? "interrupted" : "error");
        if (!rc) {
            rc = crc;
        } else if (crc) {
            log_warn("%s", err_msg()); /* the second failure is reported too, the first stays the error */
            err_set(rc, "%s", first);
        }
    }
    if (!rc) {
        printf("\n%s: done at step %lld (%.1f s of training)\n", j->job.name, (long long)r->step, r->elapsed);
        if (acc0 >= 0) printf("  validation accuracy before training: %.3f\n", acc0);
        if (acc1 >= 0) printf("  validation accuracy after training:  %.3f\n", acc1);
        printf("  checkpoints: %s/checkpoints/\n  metrics:     %s/metrics.h5\n", r->ckdir, r->ckdir);
        printf("  resume with: orpo-hpc resume %s\n  plot with:   python3 tools/plot_metrics.py %s/metrics.h5\n", j->file,
               r->ckdir);
    }
    teardown(r);
    free(r);
    if (lockfd >= 0) close(lockfd);
    return rc;
}
