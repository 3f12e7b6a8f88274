/* job_plan — the memory plan and step-time estimate of a job (see job_plan.h, docs/plan.md). */
#include "job/job_plan.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/device.h"
#include "backend/tensor.h"
#include "data/anyres.h"
#include "data/dataset.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "io/log.h"
#include "io/mem.h"
#include "job/job_run.h"
#include "model/model_h5.h"

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)
/* CUDA: the context, driver and allocator reserve, and the cap on cuBLASLt / cuDNN workspaces
 * (spec/gpu-backend.md §4.1: context + workspaces ~0.3-0.5 GB; 32 MB of cuBLASLt workspace is ample) */
#define JP_CTX_RESERVE ((size_t)(0.4 * GIB))
#define JP_WS_CAP ((size_t)32 << 20)

/* ---- the GPU table ------------------------------------------------------------------------------------------
 * Spec-sheet numbers (vendor datasheets and the architecture whitepapers), not measurements:
 * - bf16_tflops: dense bf16 tensor-core peak with fp32 accumulation (datasheets quote "with sparsity", twice
 *   this). Data-centre and workstation datasheets list it (A2000 63.9 sparse, A10 125, L4 121 (242 sparse),
 *   L40S 362, A100 312, H100/H200 SXM 989). GeForce cards run fp32-accumulate MMA at half the fp16-accumulate rate;
 *   their value is SMs x 512 dense FLOP/clock/SM x boost clock from the Ampere GA10x and Ada whitepapers:
 *   RTX 3060 28 SMs 1.777 GHz, RTX 4060 24 SMs 2.46 GHz, RTX 4070 46 SMs 2.475 GHz.
 * - mem_gbs: the datasheet memory bandwidth (A100 80GB: SXM4; H100, H200: SXM5).
 * - pcie_gbs: one direction of the host link, from its generation and width: PCIe 4.0 x16 31.5 GB/s (x8 on the
 *   RTX 4060: 15.8), PCIe 5.0 x16 63 GB/s.
 * - mem_gib: the datasheet's memory size (GB), used as GiB; the usable amount is a little less (ECC, driver). */
static const jp_gpu GPUS[] = {
    {"RTX A2000 8GB", 31.9, 288.0, 31.5, 8.0},
    {"RTX 3060", 25.5, 360.0, 31.5, 12.0},
    {"RTX 4060", 30.2, 272.0, 15.8, 8.0},
    {"RTX 4070", 58.3, 504.2, 31.5, 12.0},
    {"A10", 125.0, 600.0, 31.5, 24.0},
    {"L4", 121.0, 300.0, 31.5, 24.0},
    {"L40S", 362.0, 864.0, 31.5, 48.0},
    {"A100 40GB", 312.0, 1555.0, 31.5, 40.0},
    {"A100 80GB", 312.0, 2039.0, 31.5, 80.0},
    {"H100", 989.0, 3350.0, 63.0, 80.0},
    {"H200", 989.0, 4800.0, 63.0, 141.0},
};
#define NGPUS ((int)(sizeof GPUS / sizeof GPUS[0]))

const jp_gpu *jp_gpus(int *n) {
    if (n) *n = NGPUS;
    return GPUS;
}

/* lower case without spaces, '-' and '_' */
static void squash(const char *s, char *out, size_t cap) {
    size_t o = 0;
    for (; *s && o + 1 < cap; s++)
        if (*s != ' ' && *s != '-' && *s != '_') out[o++] = (char)tolower((unsigned char)*s);
    out[o] = 0;
}

const jp_gpu *jp_gpu_find(const char *name) {
    char want[64], have[64];
    squash(name, want, sizeof want);
    if (!want[0]) return NULL;
    const jp_gpu *prefix = NULL;
    int nprefix = 0;
    for (int i = 0; i < NGPUS; i++) {
        squash(GPUS[i].name, have, sizeof have);
        if (!strcmp(have, want) || (!strncmp(have, "rtx", 3) && !strcmp(have + 3, want))) return &GPUS[i];
        if (!strncmp(have, want, strlen(want)) || (!strncmp(have, "rtx", 3) && !strncmp(have + 3, want, strlen(want))))
            prefix = &GPUS[i], nprefix++;
    }
    return nprefix == 1 ? prefix : NULL;
}

static void gpu_list(char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < NGPUS && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", GPUS[i].name);
}

const char *jp_strategy_name(unsigned bit) {
    switch (bit) {
    case JP_LOGITS_CHUNK: return "answer-only logits in chunks";
    case JP_RECOMPUTE: return "per-layer recompute";
    case JP_OFFLOAD: return "offload of saved layer inputs";
    case JP_VISION_CACHE: return "vision features from cache";
    }
    return "?";
}

static const char *strategy_key(unsigned bit) {
    switch (bit) {
    case JP_LOGITS_CHUNK: return "logits_chunk";
    case JP_RECOMPUTE: return "recompute";
    case JP_OFFLOAD: return "offload";
    case JP_VISION_CACHE: return "vision_cache";
    }
    return "?";
}

void jp_opts_default(jp_opts *o) { memset(o, 0, sizeof *o); }

/* The micro-batch dims lt_plan gets: every pair as long as the largest prefix (<image> expanded) plus two of the
 * longest answer, target rows bounded by the tokens (the trainer's sizing, src/train/trainer.c setup) */
void jp_dims_for(int64_t prefix_ids, int64_t image_tokens, int64_t answer_ids, int64_t pairs, int tiles_per_pair,
                 ls_dims *d) {
    ls_dims_pairs(prefix_ids, image_tokens, answer_ids, pairs, tiles_per_pair, d);
}

/* ---- the model --------------------------------------------------------------------------------------------- */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* model.h5's root attribute quantization / quant_scope: index in names, or -1 */
static int attr_index(hid_t f, const char *name, const char *const *names, int *out) {
    char *v = NULL;
    *out = -1;
    if (h5x_attr_exists(f, ".", name) != 1) return ERR_OK;
    int rc = h5x_attr_get_str(f, ".", name, &v);
    if (rc) return rc;
    for (int i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) *out = i;
    free(v);
    return ERR_OK;
}

/* the config and what the weights are stored as: model.h5 (its attributes), an HF directory or a config.json */
static int load_model(jp_plan *p, const job_config *j, int *quant, int *scope) {
    const char *path = j->model.path;
    *quant = j->model.quantization;
    *scope = j->model.quant_scope;
    snprintf(p->model_path, sizeof p->model_path, "%s", path);
    if (!fs_exists(path))
        return err_set(ERR_IO, "model.path %s does not exist; plan reads a model.h5, a HuggingFace model directory or "
                       "its config.json (e.g. --set model.path=DIR/config.json), no weights", path);
    if (fs_is_dir(path)) {
        if (fs_join(p->model_path, sizeof p->model_path, path, "config.json"))
            return err_set(ERR_ARGS, "model.path %s: path too long", path);
        if (!fs_exists(p->model_path))
            return err_set(ERR_DATA, "model.path %s: a directory without config.json (expected a HuggingFace model "
                           "directory)", path);
        snprintf(p->model_from, sizeof p->model_from, "HF directory, config.json only");
        snprintf(p->weights_from, sizeof p->weights_from, "model.quantization / quant_scope of the job");
        return llava_config_from_hf(p->model_path, &p->cfg);
    }
    if (ends_with(path, ".json")) {
        snprintf(p->model_from, sizeof p->model_from, "HF config.json, no weights");
        snprintf(p->weights_from, sizeof p->weights_from, "model.quantization / quant_scope of the job");
        return llava_config_from_hf(path, &p->cfg);
    }
    snprintf(p->model_from, sizeof p->model_from, "model.h5, config only");
    int rc = mh5_read_config(path, &p->cfg);
    if (rc) return rc;
    hid_t f;
    if ((rc = h5x_open(path, 0, &f))) return rc;
    static const char *const qn[] = {"nf4", "bf16", "fp32", NULL}, *const sn[] = {"decoder", "all-linear", NULL};
    int q = -1, s = -1;
    rc = attr_index(f, "quantization", qn, &q);
    if (!rc) rc = attr_index(f, "quant_scope", sn, &s);
    int crc = h5x_close(&f);
    if (rc || crc) return rc ? rc : crc;
    _Static_assert((int)MH5_QUANT_NF4 == (int)JOB_QUANT_NF4 && (int)MH5_QUANT_BF16 == (int)JOB_QUANT_BF16 &&
                       (int)MH5_QUANT_FP32 == (int)JOB_QUANT_FP32 && (int)MH5_SCOPE_ALL_LINEAR == (int)JOB_QSCOPE_ALL_LINEAR,
                   "model.h5's quantization attributes are the job's values");
    if (q >= 0) *quant = q;
    if (s >= 0) *scope = s;
    snprintf(p->weights_from, sizeof p->weights_from, "%s", q >= 0 ? "model.h5's quantization attributes"
                                                                   : "model.quantization of the job (model.h5 has no "
                                                                     "quantization attribute)");
    return ERR_OK;
}

/* ---- one configuration ------------------------------------------------------------------------------------- */

static void strategy_of(const jp_plan *p, unsigned s, ls_strategy *st) {
    ls_strategy_default(st, p->act_dtype);
    st->logits_keep = !(s & JP_LOGITS_CHUNK);
    st->recompute = !!(s & JP_RECOMPUTE);
    st->offload = !!(s & JP_OFFLOAD);
    st->vision = (s & JP_VISION_CACHE) ? LS_VIS_CACHE : LS_VIS_RUN;
    st->ws_cap = p->device == DEVICE_CUDA ? JP_WS_CAP : 0;
    st->ctx_reserve = p->device == DEVICE_CUDA ? JP_CTX_RESERVE : 0;
}

/* the device peak of strategies s at dims d (tab: kept when not NULL) */
static int peak_of(const jp_plan *p, unsigned s, const ls_dims *d, size_t *peak, ls_table *keep) {
    ls_strategy st;
    strategy_of(p, s, &st);
    ls_table t;
    int rc = ls_build(&p->cfg, &p->spec, &p->wts, d, &st, &t);
    if (rc) return rc;
    *peak = ls_total(&t, LS_DEVICE, LS_ANY);
    if (keep) *keep = t;
    else ls_free(&t);
    return ERR_OK;
}

/* the combinations in the order they are tried: cheapest first. Logits in chunks cost one more lm_head pass over
 * the target rows; recompute one more decoder forward; offload PCIe traffic (hidden behind compute when the
 * prefetch keeps up). The vision cache makes a step cheaper but must be built first, so it comes last unless the
 * job has one (runtime.vision_cache): then every combination uses it. */
static int candidates(const jp_plan *p, unsigned *out) {
    static const unsigned base[] = {0, JP_LOGITS_CHUNK, JP_RECOMPUTE, JP_RECOMPUTE | JP_LOGITS_CHUNK,
                                    JP_RECOMPUTE | JP_OFFLOAD, JP_RECOMPUTE | JP_OFFLOAD | JP_LOGITS_CHUNK};
    int n = 0;
    for (int pass = 0; pass < 2; pass++) {
        unsigned v = pass ? JP_VISION_CACHE : 0;
        if (p->fixed & JP_VISION_CACHE) v = JP_VISION_CACHE;
        if (pass && ((p->fixed & JP_VISION_CACHE) || !(p->allowed & JP_VISION_CACHE))) break;
        for (size_t i = 0; i < sizeof base / sizeof base[0]; i++) {
            unsigned s = base[i] | v;
            if ((s & ~p->allowed) == 0) out[n++] = s;
        }
    }
    return n;
}

/* the first candidate that fits at dims d; -1 when none (*min_s, *min_peak: the smallest one) */
static int search(const jp_plan *p, const ls_dims *d, unsigned *found, size_t *found_peak, unsigned *min_s,
                  size_t *min_peak) {
    unsigned c[16];
    int n = candidates(p, c);
    *min_peak = (size_t)-1;
    *min_s = 0;
    for (int i = 0; i < n; i++) {
        size_t pk;
        int rc = peak_of(p, c[i], d, &pk, NULL);
        if (rc) return rc;
        if (pk < *min_peak) *min_peak = pk, *min_s = c[i];
        if ((double)pk <= p->budget) {
            *found = c[i];
            *found_peak = pk;
            return ERR_OK;
        }
    }
    return -1;
}

/* ---- the estimate --------------------------------------------------------------------------------------------- */

static size_t item_bytes(const ls_table *t, const char *name) {
    const ls_item *it = ls_find(t, name);
    return it ? it->bytes : 0;
}

static void estimate(jp_plan *p) {
    const llava_config *c = &p->cfg;
    const jp_gpu *g = p->gpu;
    jp_estimate *e = &p->est;
    memset(e, 0, sizeof *e);
    const double T = (double)p->dims.max_tok, R = (double)p->dims.max_rows, P = (double)p->dims.max_tiles;
    const double L = c->t_layers, D = c->t_hidden, Q = (double)c->t_heads * c->t_head_dim;
    const double KV = (double)c->t_kv_heads * c->t_head_dim, In = c->t_inter, V = c->vocab, r = p->spec.rank;
    const double a = (double)dtype_size(p->act_dtype);
    const int rec = !!(p->chosen & JP_RECOMPUTE), chunk = !!(p->chosen & JP_LOGITS_CHUNK);
    const int vis_run = !(p->chosen & JP_VISION_CACHE);
    /* decoder linears: forward 2 * params * tokens; backward only dX through the frozen weights (no weight
     * gradient); recompute runs the forward once more */
    const double dec_layer = D * Q + 2 * D * KV + Q * D + 3 * D * In;
    e->f_dec_fwd = 2 * L * dec_layer * T;
    e->f_dec_bwd = 2 * L * dec_layer * T;
    e->f_recompute = rec ? e->f_dec_fwd : 0;
    /* LoRA: x A then (x A) B forward; backward dX, dA, dB: twice the forward; once more with recompute */
    const double io[LT_DEC_MODULES] = {D + Q, D + KV, D + KV, Q + D, D + In, D + In, In + D};
    double lora = 0;
    for (int m = 0; m < LT_DEC_MODULES; m++)
        if (p->spec.targets & (1u << m)) lora += L * r * io[m];
    e->f_lora = 2 * T * lora * (3 + rec);
    /* attention (causal, per pair: the prefix attends to itself, each answer to the prefix and itself): QK^T and PV
     * 4 * heads * head_dim per (query, key); backward 2.5x (dQ, dK, dV, dP and the scores again) */
    const double Lp = (double)(p->prefix_ids - 1 + p->image_tokens), La = (double)(p->answer_ids + 1);
    const double qk = Lp * (Lp + 1) / 2 + 2 * (La * Lp + La * (La + 1) / 2);
    e->f_attn = 4.0 * c->t_heads * c->t_head_dim * qk * L * (double)p->pairs * (1 + 2.5 + rec);
    /* vision tower (forward; backward too when vision LoRA trains it), CLS + patches per tile */
    const double np = (double)(c->v_image / c->v_patch) * (c->v_image / c->v_patch), Dv = c->v_hidden;
    const double VI = c->v_inter, pk = 3.0 * c->v_patch * c->v_patch;
    if (vis_run) {
        const double nt = np + 1;
        double f = 2 * c->v_run_layers * (4 * Dv * Dv + 2 * Dv * VI) * P * nt + 2 * pk * Dv * P * np +
                   4 * Dv * nt * nt * c->v_run_layers * P;
        e->f_vision = f * (p->spec.vision_targets ? 3 : 1);
    }
    /* projector over every patch feature: forward; backward dX through linear_2 (LoRA) or both weights' dW (full) */
    const double fp = 2 * (Dv * D + D * D) * P * np;
    e->f_proj = fp * (p->spec.full_projector ? 3 : (p->spec.targets & LT_PROJ) ? 2 : 1);
    /* lm_head on the target rows only: forward and dX, and the forward again when the logits are chunked */
    e->f_head = 2 * V * D * R * (2 + chunk);
    e->flops = e->f_dec_fwd + e->f_dec_bwd + e->f_recompute + e->f_lora + e->f_attn + e->f_vision + e->f_proj + e->f_head;

    /* device memory traffic. Weights per decoder pass (forward, recompute, backward): NF4 read, the dequantized
     * copy written and read by the GEMM; bf16/fp32 read. lm_head per pass; the tower once (three times with vision
     * LoRA). Activations: each linear reads its input and writes its output, plus ~8 D + 3 I per token of
     * element-wise traffic (norms, residuals, RoPE, SiLU*up) per layer; backward twice the forward. */
    const double passes = 2 + rec;
    const size_t nf4 = item_bytes(&p->tab, "weights.nf4_linears");
    const ls_item *nf4i = ls_find(&p->tab, "weights.nf4_linears");
    e->b_weights = passes * ((double)nf4 + (nf4i ? 2 * a * (double)nf4i->count : 0) +
                             (double)item_bytes(&p->tab, "weights.decoder_linears"));
    e->b_weights += (2 + chunk) * (double)item_bytes(&p->tab, "weights.lm_head");
    e->b_weights += (p->spec.vision_targets ? 3 : 1) * (double)item_bytes(&p->tab, "weights.vision_tower");
    double sum_io = 0;
    for (int m = 0; m < LT_DEC_MODULES; m++) sum_io += io[m];
    e->b_acts = a * T * L * (sum_io + 8 * D + 3 * In) * (1 + 2 + rec);
    e->bytes = e->b_weights + e->b_acts;

    /* PCIe: the offloaded layer inputs out in forward and back in backward; the micro-batch's uploads (index
     * arrays, pixels or cached features) */
    if (p->chosen & JP_OFFLOAD) e->pcie_bytes += 2 * (double)item_bytes(&p->tab, "dec.layer_inputs");
    for (int i = 0; i < p->tab.n; i++)
        if (!strncmp(p->tab.items[i].name, "batch.", 6) && strcmp(p->tab.items[i].name, "batch.dlogp"))
            e->pcie_bytes += (double)p->tab.items[i].bytes;
    e->pcie_bytes += vis_run ? (double)item_bytes(&p->tab, "vision.pixels") : P * np * Dv * a;

    const double n = (double)ls_trainable_count(c, &p->spec);
    const double accum = (double)(p->job->train.grad_accum > 0 ? p->job->train.grad_accum : 1);
    e->t_compute = e->flops / (g->bf16_tflops * 1e12);
    e->t_memory = e->bytes / (g->mem_gbs * 1e9);
    e->t_pcie = e->pcie_bytes / (g->pcie_gbs * 1e9);
    /* AdamW: masters, summed gradient and both moments read, three written, the bf16 copy written; once per step */
    e->t_optimizer = (28 * n + a * n) / (g->mem_gbs * 1e9) / accum;
    e->time_s = fmax(e->t_compute, e->t_memory) + e->t_pcie + e->t_optimizer;
    e->pairs_per_s = (double)p->pairs / e->time_s;
}

/* data parallel: the fp32 gradient buffer all-reduced once per optimizer step (ring: 2 (N-1)/N of the bytes over
 * each link), after the last micro-batch's backward, not overlapped with it */
static void allreduce(jp_plan *p, int ranks) {
    jp_estimate *e = &p->est;
    if (ranks < 2) return;
    const double accum = (double)(p->job->train.grad_accum > 0 ? p->job->train.grad_accum : 1);
    e->ranks = ranks;
    e->ar_bytes = 4.0 * (double)ls_trainable_count(&p->cfg, &p->spec);
    e->ar_gbs = p->gpu->pcie_gbs;
    e->ar_time_s = 2.0 * (ranks - 1) / ranks * e->ar_bytes / (e->ar_gbs * 1e9);
    e->ar_pairs_per_s = ranks * (double)p->pairs * accum / (accum * e->time_s + e->ar_time_s);
}

/* generation during training (eval.samples answers at each validation): the KV cache of one micro-batch of
 * prompts, as many new tokens as the longest answer, at most 256 (the trainer's sizing, src/train/trainer.c) */
static void gen_dims(const jp_plan *p, int64_t pairs, ls_dims *d) {
    if (p->job->eval.samples <= 0) return;
    d->gen_prompts = (int)pairs;
    d->gen_max_new = p->answer_ids > 0 && p->answer_ids < 256 ? (int)p->answer_ids : 256;
}

/* ---- suggestions when nothing fits ------------------------------------------------------------------------------ */

static void human(double b, char *buf, size_t n) {
    if (b >= GIB) snprintf(buf, n, "%.2f GiB", b / GIB);
    else if (b >= MIB) snprintf(buf, n, "%.1f MiB", b / MIB);
    else if (b >= 1024) snprintf(buf, n, "%.1f KiB", b / 1024);
    else snprintf(buf, n, "%.0f B", b);
}

static void strat_list(unsigned s, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = 0;
    for (int k = 0; k < JP_NSTRAT; k++)
        if (s & (1u << k)) o += (size_t)snprintf(buf + o, n > o ? n - o : 0, "%s%s", o ? ", " : "", jp_strategy_name(1u << k));
    if (!o) snprintf(buf, n, "none");
}

static int suggest(jp_plan *p, size_t min_peak) {
    char hb[32], sl[200];
    ls_dims d;
    unsigned s, ms;
    size_t pk, mp;
    /* fewer pairs per micro-batch (more accumulation keeps the pairs of a step) */
    for (int64_t m = p->pairs - 1; m >= 1; m--) {
        jp_dims_for(p->prefix_ids, p->image_tokens, p->answer_ids, m, p->tiles_per_pair, &d);
        gen_dims(p, m, &d);
        int rc = search(p, &d, &s, &pk, &ms, &mp);
        if (rc > 0) return rc;
        if (rc < 0 && m == 1) {
            human((double)mp, hb, sizeof hb);
            snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                     "(fewer pairs per micro-batch do not do it: one pair needs %s)", hb);
        }
        if (rc == 0) {
            int64_t steps = p->pairs * p->job->train.grad_accum;
            human((double)pk, hb, sizeof hb);
            strat_list(s, sl, sizeof sl);
            snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                     "fewer pairs per micro-batch: train.micro_batch_pairs: %lld (device peak %s with %s)",
                     (long long)m, hb, sl);
            if (steps % m == 0 && steps / m != p->job->train.grad_accum)
                snprintf(p->suggest[p->nsuggest - 1] + strlen(p->suggest[p->nsuggest - 1]),
                         sizeof p->suggest[0] - strlen(p->suggest[p->nsuggest - 1]),
                         "; train.grad_accum: %lld keeps %lld pairs per step", (long long)(steps / m), (long long)steps);
            break;
        }
    }
    /* a smaller image (no data set: the assumed one) */
    if (!p->from_data) {
        const int t = p->cfg.anyres.tile; /* (height, width) 336x672: 1x2 tiles; 336x336: the fewest tokens */
        const int sizes[][2] = {{t, 2 * t}, {t, t}};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            int h = sizes[i][0], w = sizes[i][1];
            int64_t toks = anyres_num_image_tokens(&p->cfg.anyres, h, w);
            int tiles = anyres_num_patches(&p->cfg.anyres, h, w);
            if (toks >= p->image_tokens || toks < 0 || tiles < 0) continue;
            jp_dims_for(p->prefix_ids, toks, p->answer_ids, p->pairs, tiles, &d);
            gen_dims(p, p->pairs, &d);
            int rc = search(p, &d, &s, &pk, &ms, &mp);
            if (rc > 0) return rc;
            if (rc == 0) {
                human((double)pk, hb, sizeof hb);
                strat_list(s, sl, sizeof sl);
                snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                         "a smaller image: --image %dx%d (%lld image tokens, %d tiles; device peak %s with %s)", w, h,
                         (long long)toks, tiles, hb, sl);
                break;
            }
            if (i + 1 == sizeof sizes / sizeof sizes[0]) {
                human((double)mp, hb, sizeof hb);
                snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                         "(a smaller image does not do it: %dx%d needs %s)", w, h, hb);
            }
        }
    }
    /* no answers generated at validation: no KV cache */
    if (p->dims.gen_prompts > 0) {
        d = p->dims;
        d.gen_prompts = d.gen_max_new = 0;
        int rc = search(p, &d, &s, &pk, &ms, &mp);
        if (rc > 0) return rc;
        if (rc == 0) {
            human((double)pk, hb, sizeof hb);
            strat_list(s, sl, sizeof sl);
            snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                     "no answers generated at validation: eval.samples: 0 (no KV cache; device peak %s with %s)", hb, sl);
        }
    }
    /* a larger GPU */
    if (p->device == DEVICE_CUDA) {
        const jp_gpu *best = NULL;
        for (int i = 0; i < NGPUS; i++)
            if (GPUS[i].mem_gib * GIB >= (double)min_peak && (!best || GPUS[i].mem_gib < best->mem_gib)) best = &GPUS[i];
        human((double)min_peak, hb, sizeof hb);
        if (best)
            snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0],
                     "a larger GPU: runtime.gpu_memory_gb >= %.2f (the smallest configuration needs %s), e.g. %s "
                     "(%.0f GB): --gpu '%s'", (double)min_peak / GIB, hb, best->name, best->mem_gib, best->name);
    }
    int real = 0;
    for (int i = 0; i < p->nsuggest; i++) real += p->suggest[i][0] != '(';
    if (!real && p->nsuggest < JP_MAX_SUGGEST)
        snprintf(p->suggest[p->nsuggest++], sizeof p->suggest[0], "nothing in reach of the job's options: even one "
                 "pair per micro-batch with every strategy exceeds the budget");
    return ERR_OK;
}

/* ---- the plan ------------------------------------------------------------------------------------------------ */

static int micro_batch(jp_plan *p, const job_config *j, const jp_opts *o) {
    p->pairs = o->pairs > 0 ? o->pairs : j->train.micro_batch_pairs;
    const char *dp = j->data.path;
    if (dp && fs_exists(dp) && !fs_is_dir(dp)) {
        ds_file *d = NULL;
        int rc = ds_open(dp, &d);
        if (rc) return rc;
        const ds_meta *m = ds_meta_of(d);
        p->from_data = 1;
        p->prefix_ids = m->max_prefix_len;
        p->image_tokens = m->max_n_image_tokens;
        p->answer_ids = m->max_answer_len;
        ds_close(d);
        /* any image may use the largest grid: tiles as the trainer counts them */
        p->tiles_per_pair = 1;
        for (int i = 0; i < p->cfg.anyres.n_pinpoints; i++) {
            int t = 1 + (p->cfg.anyres.pinpoints[i][0] / p->cfg.anyres.tile) *
                            (p->cfg.anyres.pinpoints[i][1] / p->cfg.anyres.tile);
            if (t > p->tiles_per_pair) p->tiles_per_pair = t;
        }
        snprintf(p->data_note, sizeof p->data_note, "the largest pair of %s: prefix %lld ids, %lld image tokens, "
                 "answer %lld ids", dp, (long long)p->prefix_ids, (long long)p->image_tokens, (long long)p->answer_ids);
        if (o->image_h || o->prompt || o->answer)
            log_warn("plan: --image / --prompt / --answer are ignored: the job's data set %s gives the lengths", dp);
    } else {
        p->image_h = o->image_h > 0 ? o->image_h : JP_ASSUME_TILES * p->cfg.anyres.tile;
        p->image_w = o->image_w > 0 ? o->image_w : JP_ASSUME_TILES * p->cfg.anyres.tile;
        p->prefix_ids = o->prompt > 0 ? o->prompt : JP_ASSUME_PROMPT;
        p->answer_ids = o->answer > 0 ? o->answer : JP_ASSUME_ANSWER;
        p->image_tokens = anyres_num_image_tokens(&p->cfg.anyres, p->image_h, p->image_w);
        p->tiles_per_pair = anyres_num_patches(&p->cfg.anyres, p->image_h, p->image_w);
        if (p->image_tokens < 0 || p->tiles_per_pair < 0)
            return err_set(ERR_ARGS, "--image %dx%d: not an image size the model's anyres grid takes", p->image_w,
                           p->image_h);
        snprintf(p->data_note, sizeof p->data_note, "assumed (%s): image %dx%d -> %d tiles, %lld image tokens; "
                 "prompt %lld ids (chat template and <image> included), answers %lld ids each%s",
                 dp && fs_exists(dp) ? "data.path is not a file" : "no data set: data.path does not exist",
                 p->image_w, p->image_h, p->tiles_per_pair, (long long)p->image_tokens, (long long)p->prefix_ids,
                 (long long)p->answer_ids, o->prompt || o->answer ? "" : " (RLAIF-V-like)");
    }
    jp_dims_for(p->prefix_ids, p->image_tokens, p->answer_ids, p->pairs, p->tiles_per_pair, &p->dims);
    gen_dims(p, p->pairs, &p->dims);
    return ERR_OK;
}

static int device_budget(jp_plan *p, const job_config *j, const jp_opts *o) {
    if (o->gpu) {
        if (!(p->gpu = jp_gpu_find(o->gpu))) {
            char list[512];
            gpu_list(list, sizeof list);
            return err_set(ERR_ARGS, "--gpu %s: not in the GPU table (%s)", o->gpu, list);
        }
    }
    double want = o->gpu_memory_gb > 0 ? o->gpu_memory_gb : j->runtime.gpu_memory_gb;
    int cuda = j->runtime.device == JOB_DEVICE_CUDA;
    if (j->runtime.device == JOB_DEVICE_AUTO) cuda = p->gpu || want > 0; /* plan needs no GPU: auto plans for one
                                                                          * when a GPU or a budget is named */
    if (p->gpu) cuda = 1;
    p->device = cuda ? DEVICE_CUDA : DEVICE_CPU;
    if (cuda && !p->gpu) {
        /* not named: the smallest GPU of the table with the budget (the first on a tie), else the default target,
         * one 8 GB GPU (the first entry) */
        p->gpu_assumed = 1;
        p->gpu = &GPUS[0];
        if (want > 0) {
            p->gpu = &GPUS[NGPUS - 1];
            for (int i = 0; i < NGPUS; i++)
                if (GPUS[i].mem_gib >= want && GPUS[i].mem_gib < p->gpu->mem_gib) p->gpu = &GPUS[i];
        }
    }
    if (o->gpu_memory_gb > 0) {
        p->budget = o->gpu_memory_gb * GIB;
        snprintf(p->budget_from, sizeof p->budget_from, "--gpu-memory-gb");
    } else if (j->runtime.gpu_memory_gb > 0) {
        p->budget = j->runtime.gpu_memory_gb * GIB;
        snprintf(p->budget_from, sizeof p->budget_from, "runtime.gpu_memory_gb");
    } else if (cuda) {
        p->budget = p->gpu->mem_gib * GIB;
        snprintf(p->budget_from, sizeof p->budget_from, "the memory of the %s", p->gpu->name);
    } else {
        long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGE_SIZE);
        p->budget = pages > 0 && psz > 0 ? (double)pages * (double)psz : 1e18;
        snprintf(p->budget_from, sizeof p->budget_from, "this machine's memory (CPU run)");
    }
    /* a GPU keeps 1/8 of its memory free: the display and other processes on a workstation or laptop GPU, the
     * driver's allocations beyond the context reserve, the allocator's alignment (8 GB -> the 7.0 GiB plan) */
    if (cuda) {
        p->budget *= 7.0 / 8.0;
        size_t l = strlen(p->budget_from);
        snprintf(p->budget_from + l, sizeof p->budget_from - l, ", 1/8 kept free");
    }
    int prec = j->runtime.precision;
    if (prec == JOB_PREC_AUTO) prec = cuda ? JOB_PREC_BF16 : JOB_PREC_FP32;
    p->act_dtype = prec == JOB_PREC_BF16 ? DT_BF16 : DT_F32;
    return ERR_OK;
}

int jp_make(const job_config *j, const jp_opts *o, jp_plan *p) {
    memset(p, 0, sizeof *p);
    p->job = j;
    int quant, scope, rc;
    if ((rc = job_run_spec(j, &p->spec))) return rc;
    if ((rc = device_budget(p, j, o))) return rc;
    if ((rc = load_model(p, j, &quant, &scope))) return rc;
    ls_weights_default(&p->wts, p->device);
    if (quant == JOB_QUANT_NF4) {
        p->wts.linear_dtype = DT_NF4;
        p->wts.quant_all = scope == JOB_QSCOPE_ALL_LINEAR;
    } else {
        p->wts.linear_dtype = p->device == DEVICE_CUDA ? DT_BF16 : DT_F32; /* CUDA: every non-NF4 weight bf16 */
    }
    if ((rc = micro_batch(p, j, o))) return rc;
    /* what the job allows and sets */
    p->allowed = JP_LOGITS_CHUNK | JP_VISION_CACHE;
    if (j->train.gradient_checkpointing) p->allowed |= JP_RECOMPUTE | JP_OFFLOAD;
    if (p->spec.vision_targets) p->allowed &= ~(unsigned)JP_VISION_CACHE;
    if (j->runtime.vision_cache) {
        if (p->spec.vision_targets)
            return err_set(ERR_ARGS, "runtime.vision_cache: the vision features cannot come from a cache when the "
                           "vision tower is trained (vision:* LoRA targets)");
        p->fixed = JP_VISION_CACHE;
    }
    /* the search */
    unsigned s, ms;
    size_t pk, mp;
    rc = search(p, &p->dims, &s, &pk, &ms, &mp);
    if (rc > 0) return rc;
    p->fits = rc == 0;
    p->chosen = p->fits ? s : ms;
    if ((rc = peak_of(p, p->chosen, &p->dims, &p->peak, &p->tab))) return rc;
    strategy_of(p, p->chosen, &p->st);
    p->host = ls_total(&p->tab, LS_HOST, LS_ANY);
    /* what each chosen strategy saves: the peak without it (recompute: without offload too, which needs it) */
    for (int k = 0; k < JP_NSTRAT; k++) {
        unsigned bit = 1u << k;
        if (!(p->chosen & bit)) continue;
        unsigned without = p->chosen & ~bit;
        if (bit == JP_RECOMPUTE) without &= ~(unsigned)JP_OFFLOAD;
        size_t other;
        if ((rc = peak_of(p, without, &p->dims, &other, NULL))) return rc;
        p->saves[k] = other > p->peak ? other - p->peak : 0;
    }
    if (p->device == DEVICE_CUDA) {
        p->has_estimate = 1;
        estimate(p);
        allreduce(p, o->ranks);
    }
    if (!p->fits && (rc = suggest(p, mp))) return rc;
    return ERR_OK;
}

void jp_free(jp_plan *p) { ls_free(&p->tab); }

/* ---- output -------------------------------------------------------------------------------------------------- */

static const char *life_name(int l) {
    static const char *n[] = {"weights", "trainable", "micro-batch", "layer", "workspace"};
    return l >= 0 && l < LS_NLIFE ? n[l] : "?";
}

static const char *dtype_label(int dt) { return dt == DT_NF4 ? "nf4" : dtype_name(dt); }

static void strategy_why(const jp_plan *p, int k, char *buf, size_t n) {
    unsigned bit = 1u << k;
    char hb[32], hh[32];
    if (p->chosen & bit) {
        human((double)p->saves[k], hb, sizeof hb);
        if (bit == JP_OFFLOAD) {
            human((double)item_bytes(&p->tab, "dec.layer_inputs"), hh, sizeof hh);
            snprintf(buf, n, "yes: saves %s of device memory (the %lld layer inputs, %s, live in pinned host memory; two "
                     "device buffers, the next one prefetched)", hb, (long long)p->cfg.t_layers + 1, hh);
        } else if (bit == JP_RECOMPUTE) {
            snprintf(buf, n, "yes: saves %s (one layer's activations kept instead of %d; each layer runs again in "
                     "backward)", hb, p->cfg.t_layers);
        } else if (bit == JP_LOGITS_CHUNK) {
            snprintf(buf, n, "yes: saves %s (%d rows of logits at a time instead of %lld; recomputed in backward)", hb,
                     LS_LOGITS_CHUNK, (long long)p->dims.max_rows);
        } else {
            snprintf(buf, n, "yes: saves %s (no tower weights or activations on the device)%s", hb,
                     (p->fixed & bit) ? "; runtime.vision_cache is set"
                                      : "; needs runtime.vision_cache: PATH (the features, built once)");
        }
        return;
    }
    if (!(p->allowed & bit)) {
        snprintf(buf, n, "no: %s", bit == JP_VISION_CACHE ? "the vision tower is trained (vision:* LoRA targets)"
                                                          : "train.gradient_checkpointing is false");
        return;
    }
    snprintf(buf, n, "no: %s", p->fits ? "not needed" : "(not enough)");
}

void jp_print(const jp_plan *p, FILE *fp) {
    const job_config *j = p->job;
    char hb[32], hb2[32], desc[512];
    fprintf(fp, "plan of %s (%s)\n", j->job.name, j->file ? j->file : "?");
    llava_config_describe(&p->cfg, desc, sizeof desc);
    fprintf(fp, "  model        %s (%s)\n               %s\n", p->model_path, p->model_from, desc);
    fprintf(fp, "  weights      decoder linears %s%s, other weights %s (%s)\n", dtype_label(p->wts.linear_dtype),
            p->wts.quant_all ? " (vision tower and projector too)" : "", dtype_label(p->wts.dtype), p->weights_from);
    fprintf(fp, "  LoRA         rank %d, %lld trainable values (fp32 masters, gradients, AdamW moments)\n", p->spec.rank,
            (long long)ls_trainable_count(&p->cfg, &p->spec));
    if (p->device == DEVICE_CUDA)
        fprintf(fp, "  device       cuda: %s%s, activations %s, budget %.2f GiB (%s)\n", p->gpu->name,
                p->gpu_assumed ? " (assumed: name one with --gpu)" : "", dtype_label(p->act_dtype), p->budget / GIB,
                p->budget_from);
    else
        fprintf(fp, "  device       cpu, activations %s, budget %.2f GiB (%s)\n", dtype_label(p->act_dtype),
                p->budget / GIB, p->budget_from);
    fprintf(fp, "  micro-batch  %lld pairs: %lld tokens, %lld target rows, %d image tiles\n               %s\n",
            (long long)p->pairs, (long long)p->dims.max_tok, (long long)p->dims.max_rows, p->dims.max_tiles, p->data_note);
    fprintf(fp, "\nitems (the size table, model/llava_size.c)\n");
    fprintf(fp, "  %-28s %-5s %14s %12s  %-6s %s\n", "name", "dtype", "count", "bytes", "place", "lifetime");
    for (int i = 0; i < p->tab.n; i++) {
        const ls_item *it = &p->tab.items[i];
        human((double)it->bytes, hb, sizeof hb);
        fprintf(fp, "  %-28s %-5s %14lld %12s  %-6s %s%s\n", it->name, dtype_label(it->dtype), (long long)it->count, hb,
                it->place == LS_DEVICE ? "device" : "host", life_name(it->life),
                it->shared ? " (in the backward buffers' place: not counted again)" : "");
    }
    fprintf(fp, "\nstrategies (tried from the cheapest; the first combination that fits is used)\n");
    for (int k = 0; k < JP_NSTRAT; k++) {
        char why[400];
        strategy_why(p, k, why, sizeof why);
        fprintf(fp, "  %-32s %s\n", jp_strategy_name(1u << k), why);
    }
    if (p->device == DEVICE_CUDA) {
        human((double)item_bytes(&p->tab, "ws.dequant"), hb, sizeof hb);
        fprintf(fp, "  always: one reused dequant buffer (%s, the largest linear), library workspace capped at %.0f MiB, "
                "CUDA context reserve %.2f GiB\n", hb, (double)JP_WS_CAP / MIB, (double)JP_CTX_RESERVE / GIB);
    }
    fprintf(fp, "\n");
    human((double)p->peak, hb, sizeof hb);
    fprintf(fp, "device peak  %s (%lld bytes, every item of every lifetime%s) of %.2f GiB: %s\n", hb, (long long)p->peak,
            p->device == DEVICE_CUDA ? ", context reserve included" : "", p->budget / GIB,
            p->fits ? "fits" : "DOES NOT FIT");
    for (int l = 0; l < LS_NLIFE; l++) {
        human((double)ls_total(&p->tab, LS_DEVICE, l), hb, sizeof hb);
        fprintf(fp, "  %-12s %s\n", life_name(l), hb);
    }
    human((double)p->host, hb, sizeof hb);
    fprintf(fp, "host         %s (%lld bytes: pinned offload buffers and the micro-batch's staging)\n", hb,
            (long long)p->host);
    if (!p->fits) {
        fprintf(fp, "\nnothing fits %.2f GiB; above: the smallest configuration. What would fit:\n", p->budget / GIB);
        for (int i = 0; i < p->nsuggest; i++) fprintf(fp, "  - %s\n", p->suggest[i]);
    }
    if (!p->has_estimate) {
        fprintf(fp, "\nestimate      none for the CPU (measure with orpo-hpc bench step)\n");
        return;
    }
    const jp_estimate *e = &p->est;
    fprintf(fp, "\nestimate on %s (roofline at spec-sheet peaks, %.1f TFLOP/s bf16, %.0f GB/s, PCIe %.1f GB/s: a lower "
            "bound on the time)\n", p->gpu->name, p->gpu->bf16_tflops, p->gpu->mem_gbs, p->gpu->pcie_gbs);
    fprintf(fp, "  flops        %.1f TFLOP per micro-batch: decoder forward %.1f, backward (dX) %.1f, recompute %.1f, "
            "LoRA %.2f, attention %.2f, vision %.2f, projector %.2f, lm_head %.2f\n", e->flops / 1e12,
            e->f_dec_fwd / 1e12, e->f_dec_bwd / 1e12, e->f_recompute / 1e12, e->f_lora / 1e12, e->f_attn / 1e12,
            e->f_vision / 1e12, e->f_proj / 1e12, e->f_head / 1e12);
    fprintf(fp, "  memory       %.1f GB moved: weights %.1f (NF4 read and dequantized per pass: forward%s, backward), "
            "activations %.1f\n", e->bytes / 1e9, e->b_weights / 1e9, (p->chosen & JP_RECOMPUTE) ? ", recompute" : "",
            e->b_acts / 1e9);
    fprintf(fp, "  pcie         %.2f GB (%s)\n", e->pcie_bytes / 1e9,
            (p->chosen & JP_OFFLOAD) ? "offloaded layer inputs out and back, uploads" : "uploads");
    fprintf(fp, "  time         max(%.3f s compute, %.3f s memory) + %.3f s PCIe (not overlapped) + %.4f s AdamW = "
            "%.3f s per micro-batch: %.2f pairs/s\n", e->t_compute, e->t_memory, e->t_pcie, e->t_optimizer, e->time_s,
            e->pairs_per_s);
    if (p->act_dtype == DT_F32)
        fprintf(fp, "  (runtime.precision fp32: the bf16 peak is optimistic for fp32 GEMMs)\n");
    if (e->ranks > 1) {
        human(e->ar_bytes, hb, sizeof hb);
        human(e->ar_bytes * 2.0 * (e->ranks - 1) / e->ranks, hb2, sizeof hb2);
        fprintf(fp, "  all-reduce   %d ranks: %s of fp32 gradients per optimizer step (ring: %s over each link at %.1f "
                "GB/s, PCIe assumed) = %.3f s, after the last micro-batch, not overlapped with backward: %.2f pairs/s "
                "in all\n", e->ranks, hb, hb2, e->ar_gbs, e->ar_time_s, e->ar_pairs_per_s);
    }
}

void jp_summary(const jp_plan *p, char *buf, size_t n) {
    char hb[32], hh[32], sl[200];
    human((double)p->peak, hb, sizeof hb);
    human((double)p->host, hh, sizeof hh);
    strat_list(p->chosen, sl, sizeof sl);
    size_t o = (size_t)snprintf(buf, n, "plan: device peak %s of %.2f GiB (%s)%s, host %s; strategies: %s; micro-batch "
                                "%lld tokens", hb, p->budget / GIB, p->device == DEVICE_CUDA ? p->gpu->name : "cpu",
                                p->fits ? "" : " DOES NOT FIT", hh, sl, (long long)p->dims.max_tok);
    if (p->has_estimate && o < n)
        snprintf(buf + o, n - o, "; estimate %.3f s per micro-batch, %.2f pairs/s", p->est.time_s, p->est.pairs_per_s);
}

void jp_log_start(const job_config *j, int log, ls_strategy *st, int *have) {
    jp_opts o;
    jp_opts_default(&o);
    jp_plan p;
    *have = 0;
    if (jp_make(j, &o, &p)) {
        if (log) log_warn("plan: %s (orpo-hpc plan %s)", err_msg(), j->file ? j->file : "JOB.yaml");
        err_clear();
        jp_free(&p);
        return;
    }
    char line[1024];
    jp_summary(&p, line, sizeof line);
    if (log && p.fits) log_info("%s", line);
    else if (log) log_warn("%s (orpo-hpc plan %s says what would fit)", line, j->file ? j->file : "JOB.yaml");
    *st = p.st; /* when nothing fits: the smallest configuration's, every strategy the job allows */
    *have = 1;
    jp_free(&p);
}

static cJSON *num(cJSON *o, const char *k, double v) { return cJSON_AddNumberToObject(o, k, v); }

int jp_print_json(const jp_plan *p, FILE *fp) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return err_set(ERR_INTERNAL, "plan: out of memory building the JSON");
    cJSON_AddStringToObject(o, "job", p->job->job.name);
    cJSON_AddBoolToObject(o, "fits", p->fits);
    num(o, "device_peak_bytes", (double)p->peak);
    num(o, "host_bytes", (double)p->host);
    num(o, "budget_bytes", p->budget);
    cJSON_AddStringToObject(o, "budget_from", p->budget_from);
    cJSON_AddStringToObject(o, "device", p->device == DEVICE_CUDA ? "cuda" : "cpu");
    if (p->gpu) cJSON_AddStringToObject(o, "gpu", p->gpu->name);
    else cJSON_AddNullToObject(o, "gpu");
    cJSON_AddBoolToObject(o, "gpu_assumed", p->gpu_assumed);
    cJSON_AddStringToObject(o, "precision", dtype_label(p->act_dtype));
    cJSON_AddStringToObject(o, "model", p->model_path);
    cJSON_AddStringToObject(o, "model_from", p->model_from);
    cJSON *mb = cJSON_AddObjectToObject(o, "micro_batch");
    num(mb, "pairs", (double)p->pairs);
    num(mb, "max_tok", (double)p->dims.max_tok);
    num(mb, "max_rows", (double)p->dims.max_rows);
    num(mb, "max_tiles", p->dims.max_tiles);
    cJSON_AddStringToObject(mb, "from", p->from_data ? "data" : "assumed");
    num(mb, "prefix_ids", (double)p->prefix_ids);
    num(mb, "image_tokens", (double)p->image_tokens);
    num(mb, "answer_ids", (double)p->answer_ids);
    if (!p->from_data) {
        num(mb, "image_w", p->image_w);
        num(mb, "image_h", p->image_h);
    }
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (int i = 0; i < p->tab.n; i++) {
        const ls_item *it = &p->tab.items[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", it->name);
        cJSON_AddStringToObject(x, "dtype", dtype_label(it->dtype));
        num(x, "count", (double)it->count);
        num(x, "bytes", (double)it->bytes);
        cJSON_AddStringToObject(x, "place", it->place == LS_DEVICE ? "device" : "host");
        cJSON_AddStringToObject(x, "lifetime", life_name(it->life));
        cJSON_AddBoolToObject(x, "shared", it->shared);
        cJSON_AddItemToArray(items, x);
    }
    cJSON *sts = cJSON_AddArrayToObject(o, "strategies");
    for (int k = 0; k < JP_NSTRAT; k++) {
        unsigned bit = 1u << k;
        char why[400];
        strategy_why(p, k, why, sizeof why);
        cJSON *x = cJSON_CreateObject();
        cJSON_AddStringToObject(x, "name", strategy_key(bit));
        cJSON_AddBoolToObject(x, "chosen", !!(p->chosen & bit));
        cJSON_AddBoolToObject(x, "allowed", !!(p->allowed & bit));
        num(x, "saves_bytes", (double)p->saves[k]);
        cJSON_AddStringToObject(x, "why", why);
        cJSON_AddItemToArray(sts, x);
    }
    cJSON *sg = cJSON_AddArrayToObject(o, "would_fit");
    for (int i = 0; i < p->nsuggest; i++) cJSON_AddItemToArray(sg, cJSON_CreateString(p->suggest[i]));
    if (p->has_estimate) {
        const jp_estimate *e = &p->est;
        cJSON *x = cJSON_AddObjectToObject(o, "estimate");
        num(x, "flops", e->flops);
        num(x, "flops_decoder_forward", e->f_dec_fwd);
        num(x, "flops_decoder_backward", e->f_dec_bwd);
        num(x, "flops_recompute", e->f_recompute);
        num(x, "flops_lora", e->f_lora);
        num(x, "flops_attention", e->f_attn);
        num(x, "flops_vision", e->f_vision);
        num(x, "flops_projector", e->f_proj);
        num(x, "flops_lm_head", e->f_head);
        num(x, "bytes", e->bytes);
        num(x, "bytes_weights", e->b_weights);
        num(x, "bytes_activations", e->b_acts);
        num(x, "pcie_bytes", e->pcie_bytes);
        num(x, "time_compute_s", e->t_compute);
        num(x, "time_memory_s", e->t_memory);
        num(x, "time_pcie_s", e->t_pcie);
        num(x, "time_optimizer_s", e->t_optimizer);
        num(x, "step_time_s", e->time_s);
        num(x, "pairs_per_s", e->pairs_per_s);
        if (e->ranks > 1) {
            cJSON *ar = cJSON_AddObjectToObject(x, "allreduce");
            num(ar, "ranks", e->ranks);
            num(ar, "bytes", e->ar_bytes);
            num(ar, "link_gbs", e->ar_gbs);
            num(ar, "time_s", e->ar_time_s);
            cJSON_AddBoolToObject(ar, "overlapped", 0);
            num(ar, "pairs_per_s", e->ar_pairs_per_s);
        }
    } else {
        cJSON_AddNullToObject(o, "estimate");
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    if (!s) return err_set(ERR_INTERNAL, "plan: out of memory printing the JSON");
    fprintf(fp, "%s\n", s);
    free(s);
    return ferror(fp) ? err_set(ERR_IO, "plan: writing the JSON failed") : ERR_OK;
}
