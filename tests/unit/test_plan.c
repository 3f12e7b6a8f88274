/* The planner (src/job/job_plan.c) on the real LLaVA-1.6-Mistral-7B config (tests/fixtures/llava16_mistral7b,
 * shapes only) and jobs/llava16-mistral7b-8gb.yaml: the strategy search (first fit, nothing at 80 GB, every strategy
 * and exit-3 suggestions at 4 GB), the JSON object against the plan's own numbers, the roofline's parts against the
 * size table, the GPU table, and the keys that steer the search (train.gradient_checkpointing,
 * runtime.vision_cache, runtime.device, runtime.precision). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "backend/tensor.h"
#include "job/job.h"
#include "job/job_plan.h"
#include "test.h"

#define GIB (1024.0 * 1024.0 * 1024.0)

static job_config J;

/* the 7B job with the fixture's config.json as model.path, plus overrides */
static int load_job(const job_override *extra, int nextra) {
    job_free(&J);
    job_override ov[8];
    int n = 0;
    ov[n++] = (job_override){"model.path", test_fixture("llava16_mistral7b/config.json")};
    for (int i = 0; i < nextra && n < 8; i++) ov[n++] = extra[i];
    job_report rep;
    job_report_init(&rep);
    int rc = job_load(ORPO_SOURCE_DIR "/jobs/llava16-mistral7b-8gb.yaml", ov, n, 0, &J, &rep);
    if (rc) job_report_print(&rep, stderr);
    job_report_free(&rep);
    return rc;
}

static int make(double gib, jp_plan *p) {
    jp_opts o;
    jp_opts_default(&o);
    o.gpu_memory_gb = gib;
    int rc = jp_make(&J, &o, p);
    if (rc) fprintf(stderr, "jp_make: %s\n", err_msg());
    return rc;
}

static size_t sum(const jp_plan *p, int place) {
    size_t s = 0;
    for (int i = 0; i < p->tab.n; i++)
        if (p->tab.items[i].place == place) s += p->tab.items[i].bytes;
    return s;
}

static void test_gpu_table(void) {
    int n = 0;
    const jp_gpu *g = jp_gpus(&n);
    CHECK_EQ_INT(n, 11);
    for (int i = 0; i < n; i++) {
        CHECK(g[i].bf16_tflops > 0 && g[i].mem_gbs > 0 && g[i].pcie_gbs > 0 && g[i].mem_gib >= 8);
        CHECK(jp_gpu_find(g[i].name) == &g[i]);
    }
    CHECK_EQ_STR(jp_gpu_find("a2000")->name, "RTX A2000 8GB");
    CHECK_EQ_STR(jp_gpu_find("rtx-4060")->name, "RTX 4060");
    CHECK_EQ_STR(jp_gpu_find("4070")->name, "RTX 4070");
    CHECK_EQ_STR(jp_gpu_find("h100")->name, "H100");
    CHECK_EQ_STR(jp_gpu_find("A100 80gb")->name, "A100 80GB");
    CHECK_EQ_STR(jp_gpu_find("l40s")->name, "L40S");
    CHECK(jp_gpu_find("a100") == NULL); /* 40 or 80 GB: ambiguous */
    CHECK(jp_gpu_find("tpu") == NULL);
    CHECK(jp_gpu_find("") == NULL);
}

static void test_dims(void) {
    ls_dims d;
    jp_dims_for(64, 2928, 256, 2, 5, &d);
    CHECK_EQ_INT(d.max_tok, 2 * (64 + 2928 + 2 * 256 + 2));
    CHECK_EQ_INT(d.max_rows, d.max_tok);
    CHECK_EQ_INT(d.max_tiles, 10);
}

/* 8 GiB (the job's runtime.gpu_memory_gb): 672x672, 2 pairs; every item; the first combination that fits.
 * eval.samples: 0 (no answers generated at validation, so no KV cache: see test_samples) */
static const job_override NOSAMPLES = {"eval.samples", "0"};

static void test_8gb(void) {
    CHECK_EQ_INT(load_job(&NOSAMPLES, 1), ERR_OK);
    jp_plan p;
    if (make(0, &p)) return;
    CHECK_EQ_INT(p.device, DEVICE_CUDA);
    CHECK_EQ_INT(p.act_dtype, DT_BF16);
    CHECK_EQ_STR(p.gpu->name, "RTX A2000 8GB");
    CHECK(p.budget == 7 * GIB); /* 8 GiB, 1/8 kept free */
    CHECK_EQ_INT(p.image_tokens, 2928); /* 672x672: 2x2 grid, 576 + 48 * 49 */
    CHECK_EQ_INT(p.tiles_per_pair, 5);
    CHECK_EQ_INT(p.dims.max_tok, 7012);
    CHECK_EQ_INT(p.dims.max_tiles, 10);
    CHECK(p.fits);
    CHECK(p.peak == sum(&p, LS_DEVICE) && p.host == sum(&p, LS_HOST));
    CHECK((double)p.peak <= p.budget);
    /* the context reserve and the capped library workspace are items of the peak */
    const ls_item *ctx = ls_find(&p.tab, "ws.context_reserve"), *lib = ls_find(&p.tab, "ws.library");
    CHECK(ctx && ctx->bytes >= (size_t)(0.39 * GIB) && ctx->bytes <= (size_t)(0.41 * GIB));
    CHECK(lib && lib->bytes == (size_t)32 << 20);
    /* NF4 decoder linears: 32 layers x (2 x 4096^2 + 2 x 1024 x 4096 + 3 x 4096 x 14336) values */
    const ls_item *nf4 = ls_find(&p.tab, "weights.nf4_linears");
    CHECK(nf4 && nf4->count == 32LL * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3LL * 4096 * 14336));
    /* first fit: without any one of the chosen strategies the peak exceeds the budget */
    CHECK(p.chosen != 0);
    for (int k = 0; k < JP_NSTRAT; k++)
        if (p.chosen & (1u << k)) CHECK((double)(p.peak + p.saves[k]) > p.budget);
    CHECK(p.chosen & JP_RECOMPUTE);
    CHECK(p.chosen & JP_OFFLOAD);
    CHECK(ls_find(&p.tab, "dec.layer_inputs")->place == LS_HOST);

    /* the estimate: its decoder term is 2 x the table's NF4 values x tokens; the parts add up */
    const jp_estimate *e = &p.est;
    CHECK(p.has_estimate);
    CHECK_NEAR(e->f_dec_fwd, 2.0 * (double)nf4->count * 7012, 1.0);
    CHECK_NEAR(e->f_recompute, e->f_dec_fwd, 1.0);
    CHECK_NEAR(e->flops, e->f_dec_fwd + e->f_dec_bwd + e->f_recompute + e->f_lora + e->f_attn + e->f_vision +
                             e->f_proj + e->f_head, 1e3);
    CHECK(e->f_vision == 0 || !(p.chosen & JP_VISION_CACHE));
    CHECK_NEAR(e->t_compute, e->flops / 31.9e12, 1e-9);
    CHECK_NEAR(e->time_s, fmax(e->t_compute, e->t_memory) + e->t_pcie + e->t_optimizer, 1e-9);
    CHECK_NEAR(e->pairs_per_s, 2 / e->time_s, 1e-9);
    CHECK(e->pcie_bytes >= 2.0 * (double)ls_find(&p.tab, "dec.layer_inputs")->bytes);

    /* --json: one object with the plan's own numbers */
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    CHECK_EQ_INT(jp_print_json(&p, f), ERR_OK);
    fclose(f);
    cJSON *o = cJSON_Parse(buf);
    CHECK(o != NULL);
    if (o) {
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "fits")));
        CHECK(cJSON_GetObjectItem(o, "device_peak_bytes")->valuedouble == (double)p.peak);
        CHECK(cJSON_GetObjectItem(o, "host_bytes")->valuedouble == (double)p.host);
        const cJSON *items = cJSON_GetObjectItem(o, "items"), *it;
        CHECK_EQ_INT(cJSON_GetArraySize(items), p.tab.n);
        double dev = 0;
        cJSON_ArrayForEach(it, items) {
            CHECK(cJSON_IsString(cJSON_GetObjectItem(it, "name")) && cJSON_IsString(cJSON_GetObjectItem(it, "dtype")) &&
                  cJSON_IsNumber(cJSON_GetObjectItem(it, "count")) && cJSON_IsString(cJSON_GetObjectItem(it, "lifetime")));
            if (!strcmp(cJSON_GetObjectItem(it, "place")->valuestring, "device"))
                dev += cJSON_GetObjectItem(it, "bytes")->valuedouble;
        }
        CHECK(dev == (double)p.peak);
        const cJSON *st = cJSON_GetObjectItem(o, "strategies");
        CHECK_EQ_INT(cJSON_GetArraySize(st), 4);
        int chosen = 0;
        cJSON_ArrayForEach(it, st) chosen += cJSON_IsTrue(cJSON_GetObjectItem(it, "chosen"));
        CHECK_EQ_INT(chosen, __builtin_popcount(p.chosen));
        CHECK_EQ_STR(cJSON_GetArrayItem(st, 1)->child->valuestring, "recompute");
        const cJSON *es = cJSON_GetObjectItem(o, "estimate");
        CHECK(cJSON_GetObjectItem(es, "step_time_s")->valuedouble == e->time_s);
        CHECK(cJSON_GetObjectItem(es, "pairs_per_s")->valuedouble > 0);
        CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(o, "would_fit")), 0);
        cJSON_Delete(o);
    }
    free(buf);
    /* issue 11: at most 7.0 GiB, the context reserve included, at the job's 8 GiB (every strategy; the job sets
     * runtime.vision_cache) */
    CHECK(p.fits);
    CHECK((double)p.peak <= 7.0 * GIB);
    CHECK_EQ_INT(p.chosen, JP_LOGITS_CHUNK | JP_RECOMPUTE | JP_OFFLOAD | JP_VISION_CACHE);
    CHECK(ls_find(&p.tab, "ws.context_reserve") != NULL);
    fprintf(stderr, "note: 7B, 672x672, 2 pairs: %.3f GiB at an 8 GiB budget (strategies 0x%x)\n", (double)p.peak / GIB,
            p.chosen);
    /* the summary train logs */
    char line[1024];
    jp_summary(&p, line, sizeof line);
    CHECK_CONTAINS(line, "plan: device peak ");
    CHECK_CONTAINS(line, "RTX A2000 8GB");
    jp_free(&p);
}

/* 80 GiB: no offload, no recompute (nothing at all) */
static void test_80gb(void) {
    CHECK_EQ_INT(load_job(NULL, 0), ERR_OK);
    jp_plan p;
    if (make(80, &p)) return;
    CHECK(p.fits);
    CHECK_EQ_INT(p.chosen, JP_VISION_CACHE); /* the job sets runtime.vision_cache: nothing else */
    CHECK_EQ_STR(p.gpu->name, "A100 80GB");
    CHECK(ls_find(&p.tab, "dec.layer_inputs")->place == LS_DEVICE);
    CHECK(p.est.f_recompute == 0 && p.est.f_vision == 0); /* the job sets runtime.vision_cache */
    /* --gpu names the GPU; the budget stays 80 */
    jp_free(&p);
    jp_opts o;
    jp_opts_default(&o);
    o.gpu_memory_gb = 80;
    o.gpu = "h100";
    o.ranks = 4;
    CHECK_EQ_INT(jp_make(&J, &o, &p), ERR_OK);
    CHECK_EQ_STR(p.gpu->name, "H100");
    CHECK(!p.gpu_assumed);
    CHECK_NEAR(p.est.t_compute, p.est.flops / 989e12, 1e-12);
    /* the all-reduce: the fp32 gradient buffer, a ring over the assumed link */
    CHECK_EQ_INT(p.est.ranks, 4);
    CHECK(p.est.ar_bytes == 4.0 * (double)ls_find(&p.tab, "trainable.grads")->count);
    CHECK_NEAR(p.est.ar_time_s, 1.5 * p.est.ar_bytes / 63e9, 1e-12);
    jp_free(&p);
}

/* 4 GiB: nothing fits; the smallest configuration and what would fit */
static void test_4gb(void) {
    CHECK_EQ_INT(load_job(NULL, 0), ERR_OK);
    jp_plan p;
    if (make(4, &p)) return;
    CHECK(!p.fits);
    CHECK_EQ_INT(p.chosen, JP_LOGITS_CHUNK | JP_RECOMPUTE | JP_OFFLOAD | JP_VISION_CACHE);
    CHECK(p.nsuggest >= 1);
    int gpu = 0;
    for (int i = 0; i < p.nsuggest; i++) gpu += strstr(p.suggest[i], "a larger GPU: runtime.gpu_memory_gb >= ") != NULL;
    CHECK_EQ_INT(gpu, 1);
    /* 4 pairs at 7 GiB: fewer pairs per micro-batch fit, and the suggestion names them and the accumulation */
    jp_free(&p);
    CHECK_EQ_INT(load_job(&NOSAMPLES, 1), ERR_OK);
    jp_opts o;
    jp_opts_default(&o);
    o.gpu_memory_gb = 7;
    o.pairs = 4;
    CHECK_EQ_INT(jp_make(&J, &o, &p), ERR_OK);
    CHECK(!p.fits);
    int pairs = 0;
    for (int i = 0; i < p.nsuggest; i++)
        pairs += strstr(p.suggest[i], "fewer pairs per micro-batch: train.micro_batch_pairs: ") != NULL &&
                 strstr(p.suggest[i], "keeps 4 pairs per step") != NULL;
    CHECK_EQ_INT(pairs, 1);
    jp_free(&p);
}

/* eval.samples > 0: the trainer sizes a KV cache for one micro-batch of prompts (longest answer, at most 256 new
 * tokens); the plan has it, and when it is what breaks the budget, says that eval.samples: 0 would fit */
static void test_samples(void) {
    CHECK_EQ_INT(load_job(NULL, 0), ERR_OK);
    CHECK_EQ_INT(J.eval.samples, 2);
    jp_plan p, q;
    if (make(0, &p)) return;
    CHECK_EQ_INT(p.dims.gen_prompts, 2);
    CHECK_EQ_INT(p.dims.gen_max_new, 256);
    const ls_item *kv = ls_find(&p.tab, "gen.kv");
    CHECK(kv != NULL && kv->shared); /* in the backward buffers' place */
    CHECK_EQ_INT(load_job(&NOSAMPLES, 1), ERR_OK);
    if (!make(0, &q)) {
        CHECK(ls_find(&q.tab, "gen.kv") == NULL);
        CHECK(q.fits && p.fits);
        /* the KV cache costs the device only what it needs beyond the backward buffers */
        const ls_item *extra = ls_find(&p.tab, "bwd.generation_extra");
        CHECK_EQ_INT((long long)(p.peak - q.peak), extra ? (long long)extra->bytes : 0);
        fprintf(stderr, "note: 7B with every strategy: eval.samples 2 %.3f GiB, 0 %.3f GiB\n", (double)p.peak / GIB,
                (double)q.peak / GIB);
        jp_free(&q);
    }
    jp_free(&p);
}

/* the keys that steer the search */
static void test_keys(void) {
    jp_plan p;
    /* no recompute allowed: 8 GiB is out of reach */
    job_override nockpt = {"train.gradient_checkpointing", "false"};
    CHECK_EQ_INT(load_job(&nockpt, 1), ERR_OK);
    if (!make(0, &p)) {
        CHECK(!p.fits);
        CHECK(!(p.allowed & (JP_RECOMPUTE | JP_OFFLOAD)) && !(p.chosen & JP_RECOMPUTE));
        jp_free(&p);
    }
    /* a vision cache named by the job is always used, even at 80 GiB; the tower leaves the table */
    job_override vc = {"runtime.vision_cache", "/nonexistent/features.h5"};
    CHECK_EQ_INT(load_job(&vc, 1), ERR_OK);
    if (!make(80, &p)) {
        CHECK_EQ_INT(p.chosen, JP_VISION_CACHE);
        CHECK(ls_find(&p.tab, "weights.vision_tower") == NULL && ls_find(&p.tab, "vision.pixels") == NULL);
        jp_free(&p);
    }
    /* ... and refused with vision LoRA */
    job_override vl[] = {{"runtime.vision_cache", "/x/f.h5"}, {"lora.targets", "q_proj,vision:fc1"}};
    CHECK_EQ_INT(load_job(vl, 2), ERR_OK);
    CHECK_EQ_INT(make(0, &p), ERR_ARGS);
    jp_free(&p);
    /* the CPU: fp32 by default, no context reserve, no estimate */
    job_override cpu = {"runtime.device", "cpu"};
    CHECK_EQ_INT(load_job(&cpu, 1), ERR_OK);
    if (!make(0, &p)) {
        CHECK_EQ_INT(p.device, DEVICE_CPU);
        CHECK_EQ_INT(p.act_dtype, DT_F32);
        CHECK(!p.has_estimate && p.gpu == NULL);
        CHECK(ls_find(&p.tab, "ws.context_reserve") == NULL);
        CHECK_EQ_INT(ls_find(&p.tab, "weights.lm_head")->dtype, DT_F32);
        jp_free(&p);
    }
    job_override cpu16[] = {{"runtime.device", "cpu"}, {"runtime.precision", "bf16"}};
    CHECK_EQ_INT(load_job(cpu16, 2), ERR_OK);
    if (!make(0, &p)) {
        CHECK_EQ_INT(p.act_dtype, DT_BF16);
        jp_free(&p);
    }
    /* model.quantization bf16 on CUDA: the decoder linears bf16, nothing NF4 */
    job_override q16 = {"model.quantization", "bf16"};
    CHECK_EQ_INT(load_job(&q16, 1), ERR_OK);
    if (!make(80, &p)) {
        CHECK(ls_find(&p.tab, "weights.nf4_linears") == NULL);
        CHECK_EQ_INT(ls_find(&p.tab, "weights.decoder_linears")->dtype, DT_BF16);
        jp_free(&p);
    }
    /* a model.path that is not there says what plan reads */
    job_override none = {"model.path", "/nonexistent/llava16.h5"};
    job_free(&J);
    job_report rep;
    job_report_init(&rep);
    CHECK_EQ_INT(job_load(ORPO_SOURCE_DIR "/jobs/llava16-mistral7b-8gb.yaml", &none, 1, 0, &J, &rep), ERR_OK);
    job_report_free(&rep);
    CHECK_EQ_INT(make(0, &p), ERR_IO);
    CHECK_CONTAINS(err_msg(), "config.json");
    err_clear();
    jp_free(&p);
}

int main(void) {
    test_gpu_table();
    test_dims();
    test_8gb();
    test_80gb();
    test_4gb();
    test_samples();
    test_keys();
    job_free(&J);
    TEST_MAIN_END();
}
