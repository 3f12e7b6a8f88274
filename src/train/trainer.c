/* trainer — set-up, optimiser steps, validation and checkpoint writes of one job (see trainer.h). */
#include "train/trainer.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "backend/attn_fused.h"
#include "backend/devctx.h"
#include "backend/device.h"
#include "backend/selftest.h"
#include "backend/tensor.h"
#include "data/import.h"
#include "data/loader.h"
#include "data/tok.h"
#include "io/err.h"
#include "io/log.h"
#include "io/mem.h"
#include "model/llava_size.h"
#include "model/llava_train.h"
#include "model/model_h5.h"
#include "train/adamw.h"
#include "train/generate.h"
#include "train/ckpt.h"
#include "train/orpo.h"
#include "train/sched.h"
#include "train/vcache.h"

#define MAX_GROUPS 8

struct trainer {
    tr_config c;
    int mode;
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
    float *gsum;              /* the step's gradient: the micro-batches' gradients added in order */
    float *hstate;            /* a device backend: host copies of the values, then AdamW's m and v ([3 nstore], the
                               * checkpoint views point here), and the data-parallel fold's host buffers ([2 nstore]:
                               * the step's sum, this rank's micro-batch); NULL on the CPU */
    int on_device;            /* the trainer's memory is a device's (its table's host_mem is 0) */
    int rank, world;          /* data parallel (1 process: 0, 1) */
    orpo_pair *vp;            /* eval: per-pair sums */
    int64_t *vidx;            /* eval: pair index in data.h5 of each vp */
    int64_t step, total_steps, stop_step, steps_per_epoch;
    int64_t samples, tokens, metrics_rows;
    double elapsed;
    ldr_cursor cursor;
    orpo_config oc;
    met_log *metrics;
    vc_file *vc;              /* the vision cache (plans with LS_VIS_CACHE), else NULL */
    void *vfeat;              /* lt_feature_buffer: one micro-batch's cached features */
    size_t vfeat_bytes;
};

static double mem_peak_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* largest anyres tile count of the model */

static double lr_for_group(const tr_config *c, const char *group) {
    for (int i = 0; i < c->n_group_lr; i++)
        if (!strcmp(c->group_lr[i].name, group)) return c->group_lr[i].lr;
    return c->lr;
}

llava_trainer *tr_lt(trainer *t) { return &t->t; }
const tok *tr_tok(const trainer *t) { return t->tk; }
const tr_config *tr_cfg(const trainer *t) { return &t->c; }
const ds_model_ref *tr_ref(const trainer *t) { return &t->ref; }

/* ---- set-up ------------------------------------------------------------------------------------ */

static int setup(trainer *r) {
    const tr_config *c = &r->c;
    int rc;
    device_info dev;
    static const char *devname[] = {"auto", "cpu", "cuda"};
    if ((rc = device_select(devname[c->device], &dev))) return rc;
    lt_spec spec = c->spec;
    spec.device = DEVICE_CPU;
    if (dev.kind == DEVICE_CUDA) {
        /* the CUDA backend: bf16 activations (runtime.precision auto or bf16), a GPU of sm_80 or newer */
        const char *why = NULL;
        char buf[320];
        if (!ops_for(DEVICE_CUDA, DT_BF16)) {
            why = "this orpo-hpc has no CUDA training backend";
        } else if (dev.cc_major < 8) {
            snprintf(buf, sizeof buf, "sm_80 or newer needed (bf16); this GPU (%s) is sm_%d%d", dev.name,
                     dev.cc_major, dev.cc_minor);
            why = buf;
        } else if (!c->precision_auto && c->spec.act_dtype != DT_BF16) {
            why = "the CUDA backend runs bf16 activations (runtime.precision: fp32 is the CPU's)";
        }
        if (why && c->device == TR_DEVICE_CUDA)
            return err_set(ERR_ARGS, "runtime.device: cuda: %s; set runtime.device: cpu (or auto)", why);
        if (why) {
            log_info("runtime.device auto: a GPU is present but %s; using the CPU", why);
        } else {
            spec.device = DEVICE_CUDA;
            spec.act_dtype = DT_BF16;
            r->c.spec.act_dtype = DT_BF16;
        }
    }
    if (c->threads > 0) openblas_set_num_threads(c->threads);
    if ((rc = mh5_load(c->model_path, &r->m))) return rc;
    if ((rc = mh5_data_ref(c->model_path, &r->ref, &r->tk))) return rc;
    /* data: its metadata, the loaders of the splits this mode needs */
    ds_file *d = NULL;
    if ((rc = ds_open(c->data_path, &d))) return rc;
    r->meta = *ds_meta_of(d);
    ds_close(d);
    if ((rc = ds_check_model(&r->meta, &r->ref, c->data_path))) return rc;
    const int64_t accum = c->grad_accum, micro = c->micro_batch_pairs;
    r->rank = dist_rank(c->dist);
    r->world = dist_world(c->dist);
    const int64_t step_pairs = r->world * micro * accum;
    if (step_pairs > (1 << 24))
        return err_set(ERR_ARGS, "%d ranks x train.micro_batch_pairs %lld x train.grad_accum %lld: %lld pairs per step "
                       "is too many", r->world, (long long)micro, (long long)accum, (long long)step_pairs);
    ldr_opts lo;
    ldr_opts_default(&lo);
    lo.batch_pairs = (int)step_pairs; /* one optimiser step; split into micro-batches below */
    lo.shard_pairs = (int)micro;      /* micro-batch k is rank k % world's: only its pairs are decoded here */
    lo.nshards = r->world;
    lo.shard = r->rank;
    lo.seed = c->seed;
    lo.split = DS_TRAIN;
    if (r->mode == TR_TRAIN) {
        if (r->meta.n_train == 0)
            return err_set(ERR_DATA, "%s: no training pairs (the train split is empty; `eval` can still evaluate it)",
                           c->data_path);
        if ((rc = ldr_open(c->data_path, &r->ref, &lo, &r->train))) return rc;
    }
    lo.split = DS_VAL;
    lo.batch_pairs = (int)micro;
    lo.shuffle = 0;
    lo.shard_pairs = 0; /* validation: every rank computes all of it (the same numbers; rank 0 records them) */
    if (r->meta.n_val > 0 && (rc = ldr_open(c->data_path, &r->ref, &lo, &r->val))) return rc;
    r->n_train = r->train ? ldr_num_pairs(r->train) : 0;
    r->n_val = r->val ? ldr_num_pairs(r->val) : 0;
    if (r->mode == TR_EVAL && r->n_val == 0)
        return err_set(ERR_DATA, "%s: no validation pairs to evaluate (the val split is empty; import with "
                       "--val-fraction > 0)", c->data_path);
    if (c->max_pairs > 0 && r->n_train > c->max_pairs) r->n_train = c->max_pairs;
    r->steps_per_epoch = (r->n_train + step_pairs - 1) / step_pairs;
    r->total_steps = r->steps_per_epoch * c->epochs;
    r->stop_step = c->max_steps > 0 && c->max_steps < r->total_steps ? c->max_steps : r->total_steps;
    /* trainer, sized once from the largest pair in data.h5 */
    if (spec.device == DEVICE_CUDA) {
        /* this rank's GPU (the local rank's, round robin, as the NCCL backend picks it), and before any weight goes
         * there: every op of the CUDA table against the CPU reference (backend/selftest.c), in a context of its own.
         * A new driver or GPU that computes something else is refused here, not trained on */
        int ngpu = 0;
        char why[600];
        device_cuda_count(&ngpu);
        const int idx = ngpu > 0 ? dist_local_rank(c->dist) % ngpu : 0;
        opctx sc;
        double t0 = log_now();
        if ((rc = devctx_open(DEVICE_CUDA, idx, &sc, why, sizeof why))) {
            devctx_close(DEVICE_CUDA, &sc);
            return err_set(rc, "runtime.device cuda: GPU %d: %s", idx, why);
        }
        rc = ops_selftest(ops_for(DEVICE_CUDA, DT_BF16), &sc, why, sizeof why);
        if (rc) {
            devctx_close(DEVICE_CUDA, &sc);
            return err_set(ERR_ARGS, "runtime.device: cuda refused: the self-test of GPU %d failed (%s); set "
                           "runtime.device: cpu, or run `orpo-hpc device --selftest` for the details", idx, why);
        }
        log_info("GPU %d self-test: every op agrees with the CPU reference (%.2f s)", idx, log_now() - t0);
        /* the attention (runtime.attention): cuDNN's fused one when built and it agrees with the kernels' on this
         * GPU (backend/attn_fused.h), else the kernels' */
        int use_fused = 0;
        char amsg[700];
        rc = afz_choose(c->attention, afz_ops_cuda() != NULL, afz_check_gpu, &sc, &use_fused, amsg, sizeof amsg);
        devctx_close(DEVICE_CUDA, &sc);
        if (rc) return err_set(ERR_ARGS, "runtime.%s", amsg);
        if (amsg[0]) log_info("runtime.%s", amsg);
        if (use_fused) {
            spec.ops = afz_ops_cuda();
            log_info("attention: cuDNN's fused attention (its self-test on GPU %d agrees with the kernels')", idx);
        }
    }
    if ((rc = lt_init(&r->t, &r->m, &spec))) return rc;
    r->on_device = !r->t.o->host_mem;
    ls_dims dims;
    ls_dims_pairs(r->meta.max_prefix_len, r->meta.max_n_image_tokens, r->meta.max_answer_len, micro,
                  ls_image_tiles(&r->m.cfg), &dims);
    /* generation: eval samples get as many new tokens as the longest answer (at most 256: log_samples) */
    int gen_new = c->gen_max_new;
    if (c->eval_samples > 0) {
        int sm = r->meta.max_answer_len > 0 && r->meta.max_answer_len < 256 ? (int)r->meta.max_answer_len : 256;
        if (sm > gen_new) gen_new = sm;
    }
    dims.gen_prompts = gen_new > 0 ? (int)micro : 0;
    dims.gen_max_new = gen_new;
    ls_strategy st;
    ls_strategy_default(&st, c->spec.act_dtype);
    st.recompute = c->spec.grad_ckpt;
    if (c->have_strategy) {
        st = c->strategy;
        st.act_dtype = c->spec.act_dtype;
    }
    st.forward_only = r->mode == TR_EVAL; /* evaluation runs no backward */
    /* the vision features: from the cache when training with runtime.vision_cache (or a plan that needs it);
     * evaluation and generation run the tower */
    if (r->mode == TR_TRAIN && c->vision_cache) st.vision = LS_VIS_CACHE;
    if (r->mode == TR_EVAL) st.vision = LS_VIS_RUN;
    if (st.vision == LS_VIS_CACHE) {
        if (!c->vision_cache)
            return err_set(ERR_DATA, "the plan of %s needs the vision features from a cache (the vision tower does "
                           "not fit runtime.gpu_memory_gb): set runtime.vision_cache: PATH (built once at the "
                           "start, then read instead of running the tower)", c->name ? c->name : "the job");
        /* data parallel: rank 0 builds it when missing, the others open it once it is there */
        vc_source vs = {c->data_path, &r->ref, c->model_hash, c->data_hash, c->stop_requested};
        if (r->rank == 0) rc = vc_open(c->vision_cache, &r->t, &vs, &r->vc); /* may plan lt to build it */
        if ((rc = dist_status(c->dist, rc, "the vision cache"))) return rc;
        if (r->rank != 0 && (rc = vc_open(c->vision_cache, &r->t, &vs, &r->vc))) return rc;
    }
    if ((rc = lt_plan_ex(&r->t, &dims, &st))) return rc;
    r->vfeat = lt_feature_buffer(&r->t, &r->vfeat_bytes);
    r->lp = mem_calloc((size_t)micro, sizeof *r->lp, "trainer: micro-batch pairs");
    r->dlogp = mem_alloc(sizeof(float) * (size_t)dims.max_rows, "trainer: log-prob gradients");
    /* the step's gradient and AdamW's moments on the trainer's device (the size table's trainable.step_grads,
     * .adam_m, .adam_v), fp32 */
    const ops *fo = r->t.of;
    const size_t gbytes = sizeof(float) * (size_t)(r->t.nstore ? r->t.nstore : 1);
    r->gsum = fo->mem_alloc(&r->t.ctx, gbytes, MEM_DEVICE, "trainer: the step's gradient");
    r->mom = fo->mem_alloc(&r->t.ctx, 2 * gbytes, MEM_DEVICE, "optimiser: AdamW moments");
    if ((rc = fo->sync(&r->t.ctx))) return rc;
    if (r->on_device)
        r->hstate = mem_alloc(sizeof(float) * (size_t)(r->world > 1 ? 5 : 3) * (size_t)(r->t.nstore ? r->t.nstore : 1),
                              "trainer: host copies of the trainable state");
    r->vp = mem_calloc((size_t)(r->n_val > 0 ? r->n_val : 1), sizeof *r->vp, "validation: per-pair sums");
    r->vidx = mem_calloc((size_t)(r->n_val > 0 ? r->n_val : 1), sizeof *r->vidx, "validation: pair indices");
    r->oc.beta = c->orpo_beta;
    r->oc.nll = c->nll_all ? ORPO_NLL_ALL : ORPO_NLL_ANSWER;
    /* optimiser: one group per tensor group, with its learning rate */
    int nt = lt_tensor_count(&r->t);
    r->at = mem_calloc((size_t)(nt ? nt : 1), sizeof *r->at, "optimiser: tensor list");
    r->ck = mem_calloc((size_t)(3 * nt + 1), sizeof *r->ck, "checkpoint: tensor views");
    r->ck_names = mem_calloc((size_t)(nt + 1), sizeof *r->ck_names, "checkpoint: tensor names");
    adamw_init(&r->opt);
    /* the optimiser runs on the trainer's device, in fp32 (masters, gradients and moments are fp32) */
    if ((rc = adamw_bind(&r->opt, r->t.of, &r->t.ctx))) return rc;
    int64_t off = 0;
    for (int i = 0; i < nt; i++) {
        const lt_tensor_info *ti = lt_tensor(&r->t, i);
        r->at[i] = (adamw_tensor){ti->name, ti->data, ti->grad, r->mom + off, r->mom + r->t.nstore + off, ti->numel};
        snprintf(r->ck_names[i], CKPT_MAX_NAME, "%s", ti->name);
        for (char *p = r->ck_names[i]; *p; p++)
            if (*p == '/') *p = ':';
        for (int k = 0; k < 3; k++) {
            ckpt_tensor *ct = &r->ck[k * nt + i];
            ct->name = r->ck_names[i];
            ct->group = ti->group;
            ct->data = k == 0 ? ti->data : (k == 1 ? r->at[i].m : r->at[i].v);
            if (r->hstate) /* a device: the checkpoint reads and writes the host copies (state_to_host / _from_) */
                ct->data = r->hstate + (int64_t)k * r->t.nstore + off;
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
            r->groups[r->ng++] = (adamw_group){gname, lr_for_group(c, gname), c->weight_decay, &r->at[i], 0};
        }
        r->groups[r->ng - 1].nt++;
    }
    char desc[512];
    llava_config_describe(&r->m.cfg, desc, sizeof desc);
    log_info("model %s: %s", c->model_path, desc);
    if (r->mode == TR_TRAIN)
        log_info("data %s: %lld training pairs, %lld validation pairs; %lld steps per epoch, %lld epochs (%lld steps), "
                 "stopping at step %lld", c->data_path, (long long)r->n_train, (long long)r->n_val,
                 (long long)r->steps_per_epoch, (long long)c->epochs, (long long)r->total_steps,
                 (long long)r->stop_step);
    else
        log_info("data %s: %lld validation pairs (%lld training pairs not read)", c->data_path, (long long)r->n_val,
                 (long long)r->meta.n_train);
    char dd[256];
    device_describe(&dev, dd, sizeof dd);
    log_info("trainable: %lld values in %d tensors (%d groups); device %s (%s ops)", (long long)r->t.nstore, nt, r->ng,
             r->on_device ? dd : "cpu", r->t.o->name);
    return ERR_OK;
}

void tr_close(trainer *r) {
    if (!r) return;
    ldr_close(r->train);
    ldr_close(r->val);
    vc_close(r->vc);
    adamw_release(&r->opt);
    const ops *fo = r->t.of;
    if (fo && r->t.o) {
        fo->mem_free(&r->t.ctx, r->mom, MEM_DEVICE);
        fo->mem_free(&r->t.ctx, r->gsum, MEM_DEVICE);
    }
    lt_free(&r->t);
    llava_model_free(&r->m);
    tok_free(r->tk);
    free(r->at);
    free(r->ck);
    free(r->ck_names);
    free(r->lp);
    free(r->dlogp);
    free(r->vp);
    free(r->vidx);
    free(r->hstate);
    free(r);
}

int tr_open(const tr_config *c, int mode, trainer **out) {
    trainer *r = mem_calloc(1, sizeof *r, "trainer");
    r->c = *c;
    r->mode = mode;
    int rc = setup(r);
    if (rc) {
        tr_close(r);
        r = NULL;
    }
    *out = r;
    return rc;
}

int64_t tr_step(const trainer *t) { return t->step; }
int64_t tr_stop_step(const trainer *t) { return t->stop_step; }

/* ---- checkpoints ----------------------------------------------------------------------------- */

/* a device: the trainable values and AdamW's moments into their host copies (what checkpoints and the state hash
 * read), and back (what a restored checkpoint wrote there); the moments are m then v in both places */
static int state_to_host(trainer *r) {
    if (!r->hstate) return ERR_OK;
    const size_t n = sizeof(float) * (size_t)r->t.nstore;
    r->t.of->download(&r->t.ctx, r->hstate, r->t.store, n);
    r->t.of->download(&r->t.ctx, r->hstate + r->t.nstore, r->mom, 2 * n);
    return r->t.of->sync(&r->t.ctx);
}

static int state_from_host(trainer *r) {
    if (!r->hstate) return ERR_OK;
    const size_t n = sizeof(float) * (size_t)r->t.nstore;
    r->t.of->upload(&r->t.ctx, r->t.store, r->hstate, n);
    r->t.of->upload(&r->t.ctx, r->mom, r->hstate + r->t.nstore, 2 * n);
    return r->t.of->sync(&r->t.ctx);
}

static void fill_ckpt(trainer *r, ckpt_state *s) {
    int nt = lt_tensor_count(&r->t);
    memset(s, 0, sizeof *s);
    s->step = r->step;
    s->epoch = r->cursor.epoch;
    s->cursor_pos = r->cursor.pos;
    s->perm_seed = r->c.seed;
    s->rng_seed = r->c.seed;
    s->metrics_rows = r->metrics_rows;
    s->sched_lr_factor = sched_factor(r->c.cosine ? SCHED_COSINE : SCHED_CONSTANT, r->step, r->c.warmup_steps,
                                      r->total_steps);
    s->adam_step = r->opt.step;
    s->samples_seen = r->samples;
    s->tokens_seen = r->tokens;
    s->elapsed_s = r->elapsed;
    s->world_size = r->world;
    s->job_hash = r->c.job_hash;
    s->model_hash = r->c.model_hash;
    s->data_hash = r->c.data_hash;
    s->job_yaml = r->c.job_yaml;
    s->params = r->ck;
    s->adam_m = r->ck + nt;
    s->adam_v = r->ck + 2 * nt;
    s->ntensors = nt;
}

/* Data parallel: every rank holds the same state; after a barrier (every rank finished the step) rank 0 writes
 * it, and the others learn whether that worked. */
static int save_checkpoint(trainer *r) {
    char what[96];
    snprintf(what, sizeof what, "the checkpoint of step %lld", (long long)r->step);
    int rc = dist_barrier(r->c.dist, what);
    if (rc) return rc;
    if (r->rank == 0 && !(rc = state_to_host(r))) {
        ckpt_state s;
        fill_ckpt(r, &s);
        double t0 = log_now();
        rc = ckpt_write(r->c.output_dir, &s);
        if (!rc) rc = met_checkpoint(r->metrics, r->step);
        if (!rc && r->c.keep_last > 0) rc = ckpt_prune(r->c.output_dir, (int)r->c.keep_last);
        if (!rc) log_info("checkpoint step %lld written in %.2f s", (long long)r->step, log_now() - t0);
    }
    return dist_status(r->c.dist, rc, what);
}

int tr_restore(trainer *r, const char *path, int check_job, tr_restored *info) {
    ckpt_state s;
    fill_ckpt(r, &s);
    s.model_hash = s.data_hash = 0; /* compared by the caller, who may accept a change */
    if (!check_job) s.job_hash = 0;
    int rc = ckpt_read(path, &s);
    if (!rc) rc = state_from_host(r);
    if (rc) return rc;
    memset(info, 0, sizeof *info);
    info->step = s.step;
    info->format_version = s.format_version;
    info->job_hash = s.job_hash;
    info->model_hash = s.model_hash;
    info->data_hash = s.data_hash;
    info->job_yaml = s.loaded_yaml;
    r->step = s.step;
    r->cursor.epoch = s.epoch;
    r->cursor.pos = s.cursor_pos;
    r->metrics_rows = s.metrics_rows;
    r->opt.step = s.adam_step;
    r->samples = s.samples_seen;
    r->tokens = s.tokens_seen;
    r->elapsed = s.elapsed_s;
    if (r->train && (rc = ldr_seek(r->train, r->cursor))) return rc;
    log_info("resuming from %s (step %lld, epoch %lld, pair %lld)", path, (long long)r->step, (long long)r->cursor.epoch,
             (long long)r->cursor.pos);
    return ERR_OK;
}

/* ---- one optimiser step --------------------------------------------------------------------------- */

static int nll_tokens_of(const trainer *r, const ldr_pair *p) {
    if (r->oc.nll != ORPO_NLL_ALL) return 0;
    return (p->prefix_len - 1 - p->n_image_tokens) + p->chosen_len;
}

static void to_lt_pair(const ldr_pair *p, lt_pair *q) {
    *q = (lt_pair){p->pixels, p->n_patches, p->height, p->width, p->prefix, p->prefix_len,
                   p->chosen, p->rejected, p->chosen_len, p->rejected_len, NULL};
}

int tr_pair_features(trainer *r, const ldr_pair *pairs, int n, lt_pair *lp) {
    if (!r->vc) return ERR_OK;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const size_t bytes = (size_t)pairs[i].n_patches * (size_t)(r->t.m->cfg.v_image / r->t.m->cfg.v_patch) *
                             (size_t)(r->t.m->cfg.v_image / r->t.m->cfg.v_patch) * (size_t)r->t.m->cfg.v_hidden *
                             dtype_size(r->c.spec.act_dtype);
        if (off + bytes > r->vfeat_bytes)
            return err_set(ERR_INTERNAL, "vision cache: the micro-batch's features need more than the planned %zu "
                           "bytes", r->vfeat_bytes);
        int rc = vc_read(r->vc, pairs[i].index, pairs[i].n_patches, (char *)r->vfeat + off, r->vfeat_bytes - off);
        if (rc) return rc;
        lp[i].features = (char *)r->vfeat + off;
        off += bytes;
    }
    return ERR_OK;
}

/* the loss sums of one micro-batch, and its packed tokens, as one vector for dist_fold_f64 */
enum { SUM_TOKENS = ORPO_ACCUM_N, NSUMS };
_Static_assert(sizeof(orpo_accum) == ORPO_ACCUM_N * sizeof(double), "orpo_accum is ORPO_ACCUM_N doubles");

/* One optimiser step over the batch's micro-batches k = 0, 1, ... (rank k % world runs k). Each micro-batch's
 * gradient and loss sums start from zero, and the step's sums add them in the order of k, whatever the world
 * size: the same bits for world x grad_accum split any way (docs/parallel.md). */
static int train_step(trainer *r, met_train *row) {
    const tr_config *c = &r->c;
    const ldr_batch *b;
    double t0 = log_now();
    int rc = ldr_next(r->train, &b);
    if (rc) return rc;
    orpo_norm norm = {b->n, 0}; /* the whole step's, all ranks: the loader gives every pair's sizes */
    for (int i = 0; i < b->n; i++) norm.nll_tokens += nll_tokens_of(r, &b->pairs[i]);
    const int micro = (int)c->micro_batch_pairs, nmb = (b->n + micro - 1) / micro;
    double sums[NSUMS] = {0};
    r->t.of->memset(&r->t.ctx, r->gsum, 0, sizeof(float) * (size_t)r->t.nstore);
    for (int round = 0; round * r->world < nmb; round++) {
        int k = round * r->world + r->rank, has = k < nmb;
        double mine[NSUMS] = {0};
        if (has) {
            int off = k * micro, n = b->n - off < micro ? b->n - off : micro;
            for (int i = 0; i < n; i++) to_lt_pair(&b->pairs[off + i], &r->lp[i]);
            if ((rc = tr_pair_features(r, &b->pairs[off], n, r->lp))) return rc;
            lt_zero_grads(&r->t);
            lt_batch lb = {r->lp, n, (uint32_t)r->step, 0};
            lt_fwd fw;
            if ((rc = lt_forward(&r->t, &lb, &fw))) return rc;
            orpo_accum acc;
            orpo_accum_init(&acc);
            orpo_batch ob = {fw.nrows, fw.logp, fw.role, fw.pair, n};
            if ((rc = orpo_tokens(&r->oc, &ob, &norm, &acc, r->dlogp))) return rc;
            if ((rc = lt_backward(&r->t, r->dlogp))) return rc;
            memcpy(mine, &acc, sizeof acc);
            mine[SUM_TOKENS] = (double)fw.ntok;
        }
        char what[96];
        snprintf(what, sizeof what, "the gradient sum of step %lld", (long long)r->step + 1);
        if (!r->on_device) {
            rc = dist_fold_f32(c->dist, r->gsum, r->t.gstore, r->t.nstore, has, what);
        } else if (r->world == 1) { /* the same sum, in the same order, on the device */
            if (has) r->t.of->add_inplace(&r->t.ctx, r->gsum, r->t.gstore, r->t.nstore);
        } else { /* the collectives take host buffers: this micro-batch's gradient comes down, the sum goes up below */
            float *hsum = r->hstate + 3 * r->t.nstore, *hmine = hsum + r->t.nstore;
            if (round == 0) memset(hsum, 0, sizeof(float) * (size_t)r->t.nstore);
            if (has) r->t.of->download(&r->t.ctx, hmine, r->t.gstore, sizeof(float) * (size_t)r->t.nstore);
            if (!(rc = r->t.of->sync(&r->t.ctx))) rc = dist_fold_f32(c->dist, hsum, hmine, r->t.nstore, has, what);
        }
        if (rc) return rc;
        if ((rc = dist_fold_f64(c->dist, sums, mine, NSUMS, has, what))) return rc;
    }
    if (r->on_device && r->world > 1)
        r->t.of->upload(&r->t.ctx, r->t.gstore, r->hstate + 3 * r->t.nstore, sizeof(float) * (size_t)r->t.nstore);
    else
        r->t.of->copy(&r->t.ctx, r->t.gstore, r->gsum, r->t.nstore); /* the optimiser reads the tensors' grads */
    orpo_accum acc;
    memcpy(&acc, sums, sizeof acc);
    int64_t toks = (int64_t)sums[SUM_TOKENS];
    orpo_metrics m;
    if ((rc = orpo_finish(&acc, &norm, &m))) return rc;
    double gnorm = adamw_clip(&r->opt, r->groups, r->ng, c->max_grad_norm);
    double factor = sched_factor(c->cosine ? SCHED_COSINE : SCHED_CONSTANT, r->step, c->warmup_steps, r->total_steps);
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
    row->lr = c->lr * factor;
    row->grad_norm = gnorm;
    row->step_time = dt;
    row->tokens_per_s = (double)toks / dt;
    row->mem_peak = (int64_t)(mem_peak_mb() * 1048576.0);
    return ERR_OK;
}

/* ---- validation -------------------------------------------------------------------------------- */

int tr_evaluate(trainer *r, met_val *row, int64_t *pairs, int (*on_pair)(void *ctx, const tr_pair_result *p),
                void *ctx) {
    const tr_config *c = &r->c;
    memset(row, 0, sizeof *row);
    row->step = r->step;
    *pairs = 0;
    if (!r->val) return ERR_OK;
    int64_t limit = c->eval_max_pairs > 0 && c->eval_max_pairs < r->n_val ? c->eval_max_pairs : r->n_val;
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
        for (int i = 0; i < n; i++) {
            to_lt_pair(&b->pairs[i], &r->lp[i]);
            r->vidx[done + i] = b->pairs[i].index;
        }
        if ((rc = tr_pair_features(r, b->pairs, n, r->lp))) return rc;
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
        if (b->n < (int)c->micro_batch_pairs && done < limit) break; /* end of the split */
    }
    *pairs = done;
    if (done == 0) return ERR_OK;
    for (int64_t i = 0; on_pair && i < done; i++) {
        const orpo_pair *p = &r->vp[i];
        tr_pair_result q;
        q.index = r->vidx[i];
        q.chosen_logps = p->n_w ? p->sum_w / (double)p->n_w : NAN;
        q.rejected_logps = p->n_l ? p->sum_l / (double)p->n_l : NAN;
        q.nll = -q.chosen_logps;
        q.log_odds = orpo_log_odds(q.chosen_logps, q.rejected_logps);
        q.correct = q.chosen_logps > q.rejected_logps;
        if ((rc = on_pair(ctx, &q))) return rc;
    }
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
static char *decode(trainer *r, const int32_t *ids, int32_t n) {
    int32_t *tmp = mem_alloc(sizeof(int32_t) * (size_t)(n + 1), "sample text ids");
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] != r->m.cfg.image_token) tmp[k++] = ids[i];
    char *s = NULL;
    size_t len = 0;
    if (tok_decode(r->tk, tmp, (size_t)k, 0, &s, &len)) s = mem_strdup("(undecodable)", "sample text");
    free(tmp);
    return s;
}

/* the first eval_samples validation pairs, as text, with the model's greedy answer (generate.h; as many new tokens
 * as the longest answer of data.h5, at most 256), into the samples table and the log */
static int log_samples(trainer *r) {
    if (!r->val || r->c.eval_samples <= 0) return ERR_OK;
    ldr_cursor c0 = {0, 0};
    int rc = ldr_seek(r->val, c0);
    const ldr_batch *b;
    if (!rc) rc = ldr_next(r->val, &b);
    int n = rc ? 0 : (b->n < r->c.eval_samples ? b->n : (int)r->c.eval_samples);
    char **ans = mem_calloc((size_t)(n > 0 ? n : 1), sizeof(char *), "sample answers");
    lt_gen_opts g;
    lt_gen_opts_default(&g);
    g.max_new = r->meta.max_answer_len > 0 && r->meta.max_answer_len < 256 ? (int)r->meta.max_answer_len : 256;
    if (n > 0) rc = gen_pairs(r, b->pairs, n, &g, ans, NULL);
    for (int i = 0; !rc && i < n; i++) {
        const ldr_pair *p = &b->pairs[i];
        char *pr = decode(r, p->prefix, p->prefix_len), *ch = decode(r, p->chosen, p->chosen_len);
        char *rj = decode(r, p->rejected, p->rejected_len);
        rc = met_sample(r->metrics, r->step, pr, ch, rj, ans[i]);
        log_info("sample %d at step %lld (pair %lld): %s\n  answer:   %s\n  chosen:   %s\n  rejected: %s", i,
                 (long long)r->step, (long long)p->index, pr, ans[i], ch, rj);
        free(pr);
        free(ch);
        free(rj);
    }
    for (int i = 0; i < n; i++) free(ans[i]);
    free(ans);
    return rc;
}

static int validate_now(trainer *r, double *acc_out) {
    met_val vr;
    int64_t n = 0;
    double t0 = log_now();
    int rc = tr_evaluate(r, &vr, &n, NULL, NULL);
    if (rc || n == 0) return rc;
    log_info("validation at step %lld: %lld pairs, accuracy %.3f, loss %.4f, nll %.4f, chosen %.3f, rejected %.3f "
             "(%.1f s)", (long long)r->step, (long long)n, vr.accuracy, vr.loss, vr.nll_loss, vr.chosen_logps,
             vr.rejected_logps, log_now() - t0);
    if (acc_out) *acc_out = vr.accuracy;
    if (r->metrics && (rc = met_val_row(r->metrics, &vr))) return rc;
    return r->rank == 0 ? log_samples(r) : ERR_OK; /* data parallel: rank 0's; the others wait at the next step */
}

static void fmt_eta(char *buf, size_t n, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

static int stop_requested(const trainer *r) { return r->c.stop_requested ? r->c.stop_requested() : 0; }

/* FNV-1a over 64-bit words of the trainable state (values, AdamW moments) and the counters that decide what
 * comes next: the ranks of a data-parallel run compare it before the first step */
static uint64_t state_hash(trainer *r) {
    uint64_t h = 0xcbf29ce484222325ull;
    const float *parts[2] = {r->t.store, r->mom};
    if (r->hstate) { /* a device: the host copies (a download failure leaves them and shows as a mismatch) */
        (void)state_to_host(r);
        parts[0] = r->hstate;
        parts[1] = r->hstate + r->t.nstore;
    }
    int64_t lens[2] = {r->t.nstore, 2 * r->t.nstore};
    for (int p = 0; p < 2; p++) {
        const unsigned char *b = (const unsigned char *)parts[p];
        size_t n = sizeof(float) * (size_t)lens[p], i = 0;
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, b + i, 8);
            h = (h ^ w) * 0x100000001b3ull;
        }
        for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    }
    int64_t v[5] = {r->step, r->cursor.epoch, r->cursor.pos, r->opt.step, r->samples};
    for (int i = 0; i < 5; i++) h = (h ^ (uint64_t)v[i]) * 0x100000001b3ull;
    return h;
}

int tr_train(trainer *r, met_log *metrics, tr_summary *sum) {
    const tr_config *c = &r->c;
    int rc = ERR_OK;
    sum->acc_before = sum->acc_after = -1;
    r->metrics = metrics;
    if (r->world > 1 && (rc = dist_same_u64(c->dist, state_hash(r), "the trainable state at the start (the restored "
                                            "checkpoint, or the initial weights)")))
        goto out;
    if (r->step == 0 && c->eval_every > 0 && (rc = validate_now(r, &sum->acc_before))) goto out;
    /* a resume at a validation step whose validation did not finish (the checkpoint comes first): do it now */
    if (r->step > 0 && r->val && ((c->eval_every > 0 && r->step % c->eval_every == 0) || r->step == r->stop_step)) {
        int64_t nv = 0, ns = 0, want = c->eval_samples;
        if (want > c->micro_batch_pairs) want = c->micro_batch_pairs;
        if (want > r->n_val) want = r->n_val;
        if (metrics) met_rows_at(metrics, r->step, &nv, &ns);
        int32_t redo = metrics && (nv == 0 || ns < want); /* rank 0 holds the metrics: every rank does as it says */
        if ((rc = dist_max_i32(c->dist, &redo, "the validation check at the start"))) goto out;
        if (redo) {
            log_info("the validation of step %lld is not in the metrics (interrupted during it): validating now",
                     (long long)r->step);
            if ((rc = validate_now(r, &sum->acc_after))) goto out;
        }
    }
    double t_start = log_now(), t_logged = t_start;
    int64_t first = r->step;
    while (r->step < r->stop_step) {
        int32_t stop = stop_requested(r);
        char what[96];
        snprintf(what, sizeof what, "the stop flag of step %lld", (long long)r->step + 1);
        if ((rc = dist_max_i32(c->dist, &stop, what))) goto out; /* a signal to any rank stops them all */
        if (stop) {
            log_warn("signal %d: checkpointing at step %lld and exiting with 75 (requeue me)", (int)stop,
                     (long long)r->step);
            if (!(rc = save_checkpoint(r))) rc = ERR_INTERRUPTED;
            goto out;
        }
        met_train row;
        if ((rc = train_step(r, &row))) goto out;
        if (r->metrics && (rc = met_train_row(r->metrics, &row))) goto out;
        r->metrics_rows = r->metrics ? met_train_rows(r->metrics) : r->metrics_rows + 1;
        int last = r->step == r->stop_step;
        int ckpt_now = (c->ckpt_every > 0 && r->step % c->ckpt_every == 0) || last;
        int val_now = (c->eval_every > 0 && r->step % c->eval_every == 0) || last;
        /* a progress line every log_every_s seconds (0: every step), and at every checkpoint and validation step */
        double now = log_now();
        if (c->log_every_s <= 0 || now - t_logged >= c->log_every_s || ckpt_now || val_now || r->step == first + 1) {
            double per = (now - t_start) / (double)(r->step - first);
            char eta[32];
            fmt_eta(eta, sizeof eta, per * (double)(r->stop_step - r->step));
            log_info("step %lld/%lld epoch %.2f loss %.4f nll %.4f acc %.2f margin %+.4f lr %.2e |g| %.3f %.2f s/step "
                     "ETA %s", (long long)r->step, (long long)r->stop_step, row.epoch, row.loss, row.nll_loss,
                     row.reward_accuracy, row.reward_margin, row.lr, row.grad_norm, row.step_time, eta);
            t_logged = now;
        }
        /* the checkpoint first: a crash during the validation of this step then loses no trained step */
        if (ckpt_now && (rc = save_checkpoint(r))) goto out;
        /* every eval_every steps, and always at the end (eval_every 0: only at the end) */
        if (val_now && (rc = validate_now(r, &sum->acc_after))) goto out;
    }
out:
    sum->elapsed = r->elapsed;
    r->metrics = NULL;
    return rc;
}

void tr_memory(trainer *r, tr_memory_use *u) {
    memset(u, 0, sizeof *u);
    const ls_table *tab = lt_table(&r->t);
    if (!tab) return;
    u->plan_weights = ls_total(tab, LS_DEVICE, LS_WEIGHTS);
    u->weights = sizeof(float) * r->m.arena_floats + r->m.qbytes;
    /* with the vision features from a cache the CPU model still holds the tower (it may have built the cache), but
     * the run never reads it: it is not part of the run's weights (a GPU backend leaves it on the host) */
    if (r->vc) u->weights -= llava_model_tower_bytes(&r->m);
    u->plan_device = ls_total(tab, LS_DEVICE, LS_ANY) - u->plan_weights;
    u->plan_host = ls_total(tab, LS_HOST, LS_ANY);
    size_t live;
    r->t.o->mem_stats(&r->t.ctx, MEM_DEVICE, &live, &u->device_peak);
    r->t.o->mem_stats(&r->t.ctx, MEM_HOST, &live, &u->host_peak);
}
