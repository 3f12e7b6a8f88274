/* attn_fused: the mapping of packed sequences onto cuDNN segments (against a brute-force mask: every computed query
 * row sees exactly the keys kernels/attn.cu's mask lets it see, once), the buckets, the budget's chunking, the calls
 * that fall back, and the run-time choice of the attention with its messages. */
#include "test.h"

#include "backend/attn_fused.h"
#include "io/err.h"

/* attn.cu / cpu_attn.c: query at row i of computed sequence s sees key j */
static int ref_sees(const seq_desc *hs, int s, int64_t i, int64_t j, int causal) {
    const seq_desc d = hs[s];
    if (d.prefix >= 0 && j >= hs[d.prefix].start && j < hs[d.prefix].start + hs[d.prefix].len) return 1;
    return j >= d.start && j < (causal ? i + 1 : (int64_t)d.start + d.len);
}

/* the segment's view: query row i (in [q0, q0 + lq)) sees key j when j is in part A or B at local index t of [A; B]
 * and, causal, t <= (i - q0) + lkv - lq (cuDNN's bottom-right alignment) */
static int seg_sees(const afz_seg *g, int64_t i, int64_t j, int causal) {
    const int64_t lkv = g->alen + g->blen, qi = i - g->q0;
    int64_t t = -1;
    if (j >= g->a0 && j < g->a0 + g->alen) t = j - g->a0;
    else if (j >= g->b0 && j < g->b0 + g->blen) t = g->alen + (j - g->b0);
    if (t < 0) return 0;
    return !causal || t <= qi + lkv - g->lq;
}

static uint64_t rng = 12345;
static int rnd(int n) {
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (int)((rng >> 33) % (uint64_t)n);
}

/* every computed row in exactly one segment, seeing exactly the reference's keys; padding and the budget kept */
static void check_plan(const seq_desc *hs, int nseq, int ndesc, int64_t ntok, int causal, int bwd, size_t budget,
                       int nq, int nkv, int hd, int *nsegs_out) {
    afz_seg *segs;
    int n;
    char why[200];
    int rc = afz_plan(hs, nseq, ndesc, ntok, nq, nkv, hd, causal, bwd, budget, &segs, &n, why, sizeof why);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  why: %s\n", why);
        return;
    }
    int bad_cover = 0, bad_mask = 0, bad_pad = 0;
    for (int64_t i = 0; i < ntok; i++) {
        int owner = -1, hits = 0, hit = -1;
        for (int s = 0; s < nseq; s++)
            if (i >= hs[s].start && i < hs[s].start + hs[s].len) owner = s;
        for (int g = 0; g < n; g++)
            if (i >= segs[g].q0 && i < segs[g].q0 + segs[g].lq) hits++, hit = g;
        if (hits != (owner >= 0)) bad_cover++;
        if (owner < 0 || hit < 0) continue;
        for (int64_t j = 0; j < ntok; j++)
            if (ref_sees(hs, owner, i, j, causal) != seg_sees(&segs[hit], i, j, causal)) bad_mask++;
    }
    for (int g = 0; g < n; g++) {
        if (segs[g].sq < segs[g].lq || segs[g].skv < segs[g].alen + segs[g].blen || segs[g].sq != afz_bucket(segs[g].lq))
            bad_pad++;
        size_t need = afz_seg_bytes(segs[g].sq, segs[g].skv, nq, nkv, hd, bwd).total;
        if (need > (budget > AFZ_MIN_BUDGET ? budget : AFZ_MIN_BUDGET)) bad_pad++;
        if (segs[g].lq < 1 || segs[g].alen + segs[g].blen < 1) bad_pad++;
    }
    CHECK_EQ_INT(bad_cover, 0);
    CHECK_EQ_INT(bad_mask, 0);
    CHECK_EQ_INT(bad_pad, 0);
    if (nsegs_out) *nsegs_out = n;
    free(segs);
}

static void test_bucket(void) {
    CHECK_EQ_INT(afz_bucket(1), 64);
    CHECK_EQ_INT(afz_bucket(64), 64);
    CHECK_EQ_INT(afz_bucket(65), 72);
    CHECK_EQ_INT(afz_bucket(128), 128);
    CHECK_EQ_INT(afz_bucket(129), 144);
    CHECK_EQ_INT(afz_bucket(2600), 2816);
    int worst_ok = 1, mono = 1, prev = 0;
    for (int64_t n = 1; n <= 20000; n++) {
        int b = afz_bucket(n);
        if (b < n || (n > 64 && (double)(b - n) > 0.125 * (double)n) || b % 8) worst_ok = 0;
        if (b < prev) mono = 0;
        prev = b;
    }
    CHECK(worst_ok);
    CHECK(mono);
}

/* the ORPO layout: a shared prompt, a chosen and a rejected answer that see it; vision: tiles that see themselves */
static void test_layouts(void) {
    const seq_desc orpo[3] = {{0, 40, 0, -1}, {40, 17, 40, 0}, {57, 9, 40, 0}};
    int n = 0;
    check_plan(orpo, 3, 3, 66, 1, 0, 0, 4, 2, 16, &n);
    CHECK_EQ_INT(n, 3);
    check_plan(orpo, 3, 3, 66, 1, 1, 0, 4, 2, 16, NULL);
    const seq_desc tiles[2] = {{0, 6, 0, -1}, {6, 7, 0, -1}};
    check_plan(tiles, 2, 2, 13, 0, 0, 0, 4, 4, 16, &n);
    CHECK_EQ_INT(n, 2);
    /* rows no sequence computes (padding), a prefix after the computed ones (a KV cache), an empty sequence */
    const seq_desc cache[4] = {{3, 5, 10, 3}, {8, 0, 0, -1}, {20, 4, 0, 3}, {30, 12, 0, -1}};
    check_plan(cache, 3, 4, 45, 1, 0, 0, 8, 2, 32, &n);
    CHECK_EQ_INT(n, 2);
    /* the 7B shapes: 32 / 8 heads of 128, two pairs (a 2600-token prompt, answers of 300 and 180) */
    const seq_desc big[6] = {{0, 2600, 0, -1},  {2600, 300, 2600, 0}, {2900, 180, 2600, 0},
                             {3080, 2400, 0, -1}, {5480, 250, 2400, 3}, {5730, 90, 2400, 3}};
    check_plan(big, 6, 6, 5820, 1, 1, (size_t)128 << 20, 32, 8, 128, &n);
    CHECK(n >= 6);
}

/* a small budget splits long sequences into query chunks; still every row once, every mask exact */
static void test_chunks(void) {
    const seq_desc orpo[3] = {{0, 700, 0, -1}, {700, 333, 700, 0}, {1033, 129, 700, 0}};
    for (int causal = 0; causal < 2; causal++)
        for (int bwd = 0; bwd < 2; bwd++) {
            int n1 = 0, n2 = 0;
            /* the 700-row prompt at 32 heads of 128: each copy of its query rows is 5.8 MB (two forward, four
             * backward), over 12 / 24 MiB with the keys: query chunks; a 64-row chunk still fits */
            check_plan(orpo, 3, 3, 1162, causal, bwd, (size_t)(bwd ? 24 : 12) << 20, 32, 8, 128, &n1);
            check_plan(orpo, 3, 3, 1162, causal, bwd, (size_t)64 << 20, 32, 8, 128, &n2);
            CHECK(n1 > 3);
            CHECK(n2 >= 3);
            CHECK(n2 < n1);
        }
    /* random packings with prefixes, budgets from the floor up */
    for (int trial = 0; trial < 60; trial++) {
        seq_desc hs[8];
        int nseq = 1 + rnd(6), t = rnd(5);
        for (int s = 0; s < nseq; s++) {
            int len = rnd(4) == 0 ? 0 : 1 + rnd(trial % 3 == 0 ? 900 : 90);
            int prefix = s > 0 && rnd(2) ? rnd(s) : -1;
            hs[s] = (seq_desc){t, len, 0, prefix};
            t += len + rnd(3);
        }
        const int causal = rnd(2), bwd = rnd(2), nkv = 1 << rnd(3), nq = nkv << rnd(3), hd = 8 * (1 + rnd(16));
        check_plan(hs, nseq, nseq, t, causal, bwd, (size_t)16 << (20 + rnd(3)), nq, nkv, hd, NULL);
    }
}

static void test_fallbacks(void) {
    afz_seg *segs;
    int n;
    char why[200];
    const seq_desc ok[2] = {{0, 10, 0, -1}, {10, 5, 10, 0}};
    CHECK(afz_plan(ok, 2, 2, 15, 4, 2, 12, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "head dimension 12");
    CHECK(afz_plan(ok, 2, 2, 15, 4, 2, 256, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "head dimension 256");
    CHECK(afz_plan(ok, 2, 2, 14, 4, 2, 16, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "outside");
    const seq_desc overlap[2] = {{0, 10, 0, -1}, {9, 5, 10, -1}};
    CHECK(afz_plan(overlap, 2, 2, 15, 4, 2, 16, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "overlap");
    const seq_desc self[1] = {{0, 10, 0, 0}};
    CHECK(afz_plan(self, 1, 1, 10, 4, 2, 16, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "prefix");
    const seq_desc far[1] = {{0, 10, 0, 5}};
    CHECK(afz_plan(far, 1, 1, 10, 4, 2, 16, 1, 0, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "prefix 5");
    /* a 64-row segment over the budget: 4096 query heads of 128 need 64 MiB a copy */
    const seq_desc one[1] = {{0, 100, 0, -1}};
    CHECK(afz_plan(one, 1, 1, 100, 4096, 8, 128, 1, 1, 0, &segs, &n, why, sizeof why));
    CHECK_CONTAINS(why, "bytes of scratch");
    CHECK(segs == NULL);
}

/* ---- the choice ----------------------------------------------------------------------------------------------- */

static int calls;
static int check_pass(void *arg, char *why, size_t n) {
    (void)arg, (void)why, (void)n;
    calls++;
    return 0;
}
static int check_fail(void *arg, char *why, size_t n) {
    calls++;
    snprintf(why, n, "op attn_bwd: dk beyond tolerance (%s)", (const char *)arg);
    return ERR_INTERNAL;
}

static void test_choose(void) {
    int mode = -1, use = -1;
    char msg[600];
    CHECK_EQ_INT(afz_mode_parse("auto", &mode), ERR_OK);
    CHECK_EQ_INT(mode, AFZ_AUTO);
    CHECK_EQ_INT(afz_mode_parse("cudnn", &mode), ERR_OK);
    CHECK_EQ_INT(mode, AFZ_CUDNN);
    CHECK_EQ_INT(afz_mode_parse("kernels", &mode), ERR_OK);
    CHECK_EQ_INT(mode, AFZ_KERNELS);
    CHECK_EQ_INT(afz_mode_parse("flash", &mode), ERR_ARGS);
    CHECK_EQ_INT(afz_mode_parse(NULL, &mode), ERR_ARGS);
    CHECK_EQ_STR(afz_mode_name(AFZ_CUDNN), "cudnn");

    /* kernels: always attn.cu's, nothing checked, nothing said */
    calls = 0;
    CHECK_EQ_INT(afz_choose(AFZ_KERNELS, 1, check_pass, NULL, &use, msg, sizeof msg), ERR_OK);
    CHECK_EQ_INT(use, 0);
    CHECK_EQ_STR(msg, "");
    CHECK_EQ_INT(calls, 0);
    /* auto: cuDNN when built and its self-test passes */
    CHECK_EQ_INT(afz_choose(AFZ_AUTO, 1, check_pass, NULL, &use, msg, sizeof msg), ERR_OK);
    CHECK_EQ_INT(use, 1);
    CHECK_EQ_STR(msg, "");
    CHECK_EQ_INT(calls, 1);
    /* auto, not built: the kernels, one line why, no self-test */
    CHECK_EQ_INT(afz_choose(AFZ_AUTO, 0, check_pass, NULL, &use, msg, sizeof msg), ERR_OK);
    CHECK_EQ_INT(use, 0);
    CHECK_CONTAINS(msg, "built without cuDNN attention; using the attention kernels");
    CHECK(!strchr(msg, '\n'));
    CHECK_EQ_INT(calls, 1);
    /* auto, self-test fails: the kernels, the failure named */
    CHECK_EQ_INT(afz_choose(AFZ_AUTO, 1, check_fail, "x", &use, msg, sizeof msg), ERR_OK);
    CHECK_EQ_INT(use, 0);
    CHECK_CONTAINS(msg, "self-test on this GPU failed (op attn_bwd: dk beyond tolerance (x)); using the attention kernels");
    /* cudnn: refused (ERR_ARGS, exit 2) when not built or the self-test fails */
    CHECK_EQ_INT(afz_choose(AFZ_CUDNN, 0, check_pass, NULL, &use, msg, sizeof msg), ERR_ARGS);
    CHECK_EQ_INT(use, 0);
    CHECK_CONTAINS(msg, "attention cudnn: this orpo-hpc was built without cuDNN attention");
    CHECK_EQ_INT(afz_choose(AFZ_CUDNN, 1, check_fail, "y", &use, msg, sizeof msg), ERR_ARGS);
    CHECK_EQ_INT(use, 0);
    CHECK_CONTAINS(msg, "attention cudnn: the cuDNN attention's self-test on this GPU failed (op attn_bwd");
    CHECK_EQ_INT(afz_choose(AFZ_CUDNN, 1, check_pass, NULL, &use, msg, sizeof msg), ERR_OK);
    CHECK_EQ_INT(use, 1);
#ifndef ORPO_HAVE_CUDNN
    CHECK(afz_ops_cuda() == NULL);
#endif
}

int main(void) {
    test_bucket();
    test_layouts();
    test_chunks();
    test_fallbacks();
    test_choose();
    TEST_MAIN_END();
}
