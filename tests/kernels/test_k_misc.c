/* test_k_misc — kernels/misc.cu (scale, zero, copy, dropout, the row gathers / scatters, cast) run by the CPU executor
 * against ops_cpu_bf16, at odd sizes (1, 31, 257, 4099; rows of 1, 2, 8, 31, 257 values so that every unit width of
 * the row movers, 2 / 4 / 16 bytes, and misaligned buffers are taken), zero-size calls, NULL fill rows, repeated
 * row indices, and the 7B shapes (hidden 4096, ~3100 tokens; CLIP 1024 x 2880 patch rows).
 *
 * Tolerance 0 (bit-identical) everywhere: data movement moves bf16 bits; scale and dropout widen, form the
 * reference's one fp32 product (dropout's 1 / (1 - p) by the same host expression) and round once; the keep mask
 * is the same Philox arithmetic (rng.h) at the same counters; scatter_add_rows adds, per destination row, the same
 * fp32 terms in the same (index) order as the reference's loop and rounds once; the cast rounds with the same
 * nearest-even rule (NaN kept quiet). */
#include "kcheck.h"

#include "backend/rng.h"
#include "io/err.h"

static char what[160];

static void check_bf16(const char *op, const void *got, const void *want, int64_t n, const char *detail) {
    snprintf(what, sizeof what, "%s %s", op, detail);
    CHECK(kc_same_bf16(what, got, want, n, 0));
}

/* ---- scale, zero, copy, dropout ------------------------------------------------------------------------------- */

static void elementwise(int64_t n) {
    uint64_t s = 0x3150000u + (uint64_t)n;
    const ops *r = kc_ref();
    const size_t bytes = 2 * (size_t)(n ? n : 1);
    uint16_t *x = kc_bf16(n, &s, 3.0f);
    uint16_t *want = kc_dup(x, bytes), *got = kc_dup(x, bytes);
    char d[96];
    long before = simt_launches();
    if (n > 2) x[1] = 0x7fc0, x[2] = 0xff80; /* a NaN and -inf go through every op */

    const float alphas[] = {0.37f, -2.5f, 0.0f};
    for (int a = 0; a < 3; a++) {
        memcpy(want, x, 2 * (size_t)n), memcpy(got, x, 2 * (size_t)n);
        r->scale(&kc_rctx, want, n, alphas[a]);
        kc_scale(&kc_kctx, got, n, alphas[a]);
        snprintf(d, sizeof d, "n=%lld alpha=%g", (long long)n, (double)alphas[a]);
        check_bf16("scale", got, want, n, d);
    }
    snprintf(d, sizeof d, "n=%lld", (long long)n);
    memcpy(got, x, 2 * (size_t)n);
    kc_zero(&kc_kctx, got, n);
    r->zero(&kc_rctx, want, n);
    check_bf16("zero", got, want, n, d);
    kc_copy(&kc_kctx, got, x, n);
    r->copy(&kc_rctx, want, x, n);
    check_bf16("copy", got, want, n, d);
    /* an odd element offset: the 2-byte path; the same buffer: nothing to do */
    if (n > 1) {
        memset(got, 0, 2 * (size_t)n), memset(want, 0, 2 * (size_t)n);
        kc_copy(&kc_kctx, got + 1, x, n - 1);
        r->copy(&kc_rctx, want + 1, x, n - 1);
        check_bf16("copy (odd offset)", got, want, n, d);
        kc_copy(&kc_kctx, got, got, n);
        check_bf16("copy (in place)", got, want, n, d);
        kc_zero(&kc_kctx, got + 1, n - 1);
        r->zero(&kc_rctx, want + 1, n - 1);
        check_bf16("zero (odd offset)", got, want, n, d);
    }

    const uint32_t key[2] = {0x9e3779b9u, 0x7f4a7c15u};
    const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    const uint64_t c0s[] = {0, 1, 2, 3, 1234567, (1ull << 62) - 2, UINT64_MAX - 5};
    for (int pi = 0; pi < 4; pi++)
        for (int ci = 0; ci < 7; ci++) {
            memset(got, 0xaa, 2 * (size_t)n), memset(want, 0x55, 2 * (size_t)n);
            r->dropout(&kc_rctx, want, x, n, ps[pi], key, 7u, 3u * 64u + 5u, c0s[ci]);
            kc_dropout(&kc_kctx, got, x, n, ps[pi], key, 7u, 3u * 64u + 5u, c0s[ci]);
            snprintf(d, sizeof d, "n=%lld p=%g c0=%llu", (long long)n, (double)ps[pi], (unsigned long long)c0s[ci]);
            check_bf16("dropout", got, want, n, d);
            /* in place (the backward's use: dropout(xd, xd)) */
            memcpy(got, x, 2 * (size_t)n);
            kc_dropout(&kc_kctx, got, got, n, ps[pi], key, 7u, 3u * 64u + 5u, c0s[ci]);
            check_bf16("dropout (in place)", got, want, n, d);
        }
    /* the mask really is rng_uniform's: a value kept iff uniform >= p (p = 0.5, c0 = 3) */
    {
        rng_key_t k = {{key[0], key[1]}};
        int64_t wrong = 0;
        kc_dropout(&kc_kctx, got, x, n, 0.5f, key, 1u, 2u, 3u);
        for (int64_t i = 3; i < n; i++) {
            int kept = rng_uniform(k, 1u, 2u, 3u + (uint64_t)i) >= 0.5f;
            if (kept != (got[i] != 0 && got[i] != 0x8000) && x[i] != 0 && x[i] != 0x8000) wrong++;
        }
        CHECK(wrong == 0);
    }
    if (n > 0) KC_RAN(before);
    free(x), free(want), free(got);
}

/* the copy refuses a partial overlap (a parallel copy would race), through the sticky error */
static void copy_overlap(void) {
    uint16_t buf[64] = {0};
    kc_kctx.err = 0;
    kc_copy(&kc_kctx, buf + 1, buf, 32);
    CHECK(kc_kctx.err == ERR_INTERNAL);
    CHECK(strstr(kc_kctx.errmsg, "overlapping") != NULL);
    kc_kctx.err = 0, kc_kctx.errmsg[0] = 0;
}

/* ---- rows ------------------------------------------------------------------------------------------------------ */

/* nrows indices into [0, S): distinct (a shuffle's prefix), with repeats (random), or distinct but for a few
 * repeats (FEW: every 97th index names the row before it, as prefix sharing does); `neg` of them -1 */
enum { RANDOM = 0, DISTINCT = 1, FEW = 2 };
static int64_t *make_rows(int64_t nrows, int64_t S, int mode, int neg, uint64_t *s) {
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)(nrows ? nrows : 1));
    if (mode != RANDOM) {
        int64_t *perm = malloc(sizeof(int64_t) * (size_t)S);
        for (int64_t i = 0; i < S; i++) perm[i] = i;
        for (int64_t i = S - 1; i > 0; i--) {
            int64_t j = (int64_t)((tu_rand(s) + 1.0f) * 0.5f * (float)(i + 1)) % (i + 1), t = perm[i];
            perm[i] = perm[j], perm[j] = t;
        }
        for (int64_t i = 0; i < nrows; i++) rows[i] = perm[i];
        free(perm);
        if (mode == FEW)
            for (int64_t i = 97; i < nrows; i += 97) rows[i] = rows[i - 1];
    } else {
        for (int64_t i = 0; i < nrows; i++) rows[i] = (int64_t)((tu_rand(s) + 1.0f) * 0.5f * (float)S) % S;
        /* a run and a far repeat of one row */
        if (nrows > 3) rows[1] = rows[0], rows[nrows - 1] = rows[0];
    }
    for (int k = 0; k < neg && k < nrows; k++) rows[(int64_t)k * 7919 % nrows] = -1;
    return rows;
}

/* S source rows, nrows indices, rows of D values; `off` values of misalignment on the buffers; the scatters' indices
 * distinct and then `repeats` (RANDOM or FEW) */
static void rows_case(int64_t S, int64_t nrows, int64_t D, int off, int repeats) {
    uint64_t s = 0x0a0b0000u + (uint64_t)(S * 131 + nrows * 7 + D + off);
    const ops *r = kc_ref();
    const int64_t big = (S > nrows ? S : nrows) * D + off;
    uint16_t *src = kc_bf16(big, &s, 2.0f), *fill = kc_bf16(D + off, &s, 1.0f), *dst0 = kc_bf16(big, &s, 1.0f);
    uint16_t *want = kc_dup(dst0, 2 * (size_t)big), *got = kc_dup(dst0, 2 * (size_t)big);
    char d[96];
    long before = simt_launches();
    snprintf(d, sizeof d, "S=%lld nrows=%lld D=%lld off=%d", (long long)S, (long long)nrows, (long long)D, off);

    int64_t *rows = make_rows(nrows, S, RANDOM, 0, &s);
    r->gather_rows(&kc_rctx, want + off, src + off, rows, nrows, D);
    kc_gather_rows(&kc_kctx, got + off, src + off, rows, nrows, D);
    check_bf16("gather_rows", got, want, big, d);
    free(rows);

    for (int withfill = 0; withfill < 2; withfill++) {
        rows = make_rows(nrows, S, RANDOM, (int)(nrows / 3 + 1), &s);
        r->gather_rows_fill(&kc_rctx, want + off, src + off, rows, nrows, D, withfill ? fill + off : NULL);
        kc_gather_rows_fill(&kc_kctx, got + off, src + off, rows, nrows, D, withfill ? fill + off : NULL);
        check_bf16(withfill ? "gather_rows_fill (fill row)" : "gather_rows_fill (NULL fill)", got, want, big, d);
        free(rows);
    }

    /* scatters into S rows: distinct indices (nrows <= S), then repeated ones (the last source row wins / all add) */
    for (int distinct = 1; distinct >= 0; distinct--) {
        if (nrows > S && (distinct || repeats == FEW)) continue;
        rows = make_rows(nrows, S, distinct ? DISTINCT : repeats, 0, &s);
        memcpy(want, dst0, 2 * (size_t)big), memcpy(got, dst0, 2 * (size_t)big);
        r->scatter_rows(&kc_rctx, want + off, src + off, rows, nrows, D);
        kc_scatter_rows(&kc_kctx, got + off, src + off, rows, nrows, D);
        check_bf16(distinct ? "scatter_rows (distinct)" : "scatter_rows (repeated rows)", got, want, big, d);
        memcpy(want, dst0, 2 * (size_t)big), memcpy(got, dst0, 2 * (size_t)big);
        r->scatter_add_rows(&kc_rctx, want + off, src + off, rows, nrows, D);
        kc_scatter_add_rows(&kc_kctx, got + off, src + off, rows, nrows, D);
        check_bf16(distinct ? "scatter_add_rows (distinct)" : "scatter_add_rows (repeated rows)", got, want, big, d);
        free(rows);
    }
    if (nrows > 0 && D > 0) KC_RAN(before);
    free(src), free(fill), free(dst0), free(want), free(got);
}

/* every source row names destination row 2: one sum of nrows + 1 terms, in order, rounded once */
static void scatter_add_one_row(int64_t nrows, int64_t D) {
    uint64_t s = 0x0add0000u + (uint64_t)nrows;
    const ops *r = kc_ref();
    uint16_t *src = kc_bf16(nrows * D, &s, 1.0f), *dst0 = kc_bf16(5 * D, &s, 1.0f);
    uint16_t *want = kc_dup(dst0, 10 * (size_t)D), *got = kc_dup(dst0, 10 * (size_t)D);
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)nrows);
    for (int64_t i = 0; i < nrows; i++) rows[i] = 2;
    r->scatter_add_rows(&kc_rctx, want, src, rows, nrows, D);
    kc_scatter_add_rows(&kc_kctx, got, src, rows, nrows, D);
    char d[64];
    snprintf(d, sizeof d, "nrows=%lld D=%lld all into row 2", (long long)nrows, (long long)D);
    check_bf16("scatter_add_rows", got, want, 5 * D, d);
    free(src), free(dst0), free(want), free(got), free(rows);
}

/* ---- cast ------------------------------------------------------------------------------------------------------ */

static void cast_case(int64_t n) {
    uint64_t s = 0xca570000u + (uint64_t)n;
    const ops *r = kc_ref();
    float *f = kc_f32(n + 8, &s, 5.0f), *fw = kc_f32(n + 8, &s, 1.0f), *fg = kc_dup(fw, 4 * (size_t)(n + 8));
    uint16_t *b = kc_bf16(n + 8, &s, 5.0f), *bw = kc_bf16(n + 8, &s, 1.0f), *bg = kc_dup(bw, 2 * (size_t)(n + 8));
    /* specials and exact ties: NaN (sign kept), infinities, 1 + 2^-8 (tie, to even), the largest float (to inf) */
    const uint32_t sp[] = {0x7fc00001u, 0xffa00000u, 0x7f800000u, 0xff800000u, 0x3f808000u, 0x3f818000u, 0x7f7fffffu,
                           0x00000001u};
    for (int k = 0; k < 8 && k < n; k++) memcpy(&f[k * 3 % n], &sp[k], 4);
    if (n > 1) b[0] = 0xffc1, b[n - 1] = 0x0001;
    char d[64];
    snprintf(d, sizeof d, "n=%lld", (long long)n);
    long before = simt_launches();

    r->cast(&kc_rctx, bw, DT_BF16, f, DT_F32, n);
    kc_cast(&kc_kctx, bg, DT_BF16, f, DT_F32, n);
    check_bf16("cast f32 -> bf16", bg, bw, n + 8, d);
    r->cast(&kc_rctx, fw, DT_F32, b, DT_BF16, n);
    kc_cast(&kc_kctx, fg, DT_F32, b, DT_BF16, n);
    CHECK(tu_bits_eq(fg, fw, 4 * (size_t)(n + 8)));
    r->cast(&kc_rctx, fw + 1, DT_F32, f, DT_F32, n);
    kc_cast(&kc_kctx, fg + 1, DT_F32, f, DT_F32, n);
    CHECK(tu_bits_eq(fg, fw, 4 * (size_t)(n + 8)));
    r->cast(&kc_rctx, bw, DT_BF16, b + 1, DT_BF16, n);
    kc_cast(&kc_kctx, bg, DT_BF16, b + 1, DT_BF16, n);
    check_bf16("cast bf16 -> bf16", bg, bw, n + 8, d);
    if (n > 0) KC_RAN(before);
    free(f), free(fw), free(fg), free(b), free(bw), free(bg);
}

static void cast_refused(void) {
    float x = 1.0f;
    uint8_t y[4];
    kc_kctx.err = 0;
    kc_cast(&kc_kctx, y, DT_NF4, &x, DT_F32, 1);
    CHECK(kc_kctx.err == ERR_INTERNAL);
    CHECK(strstr(kc_kctx.errmsg, "f32 <-> bf16") != NULL);
    kc_kctx.err = 0, kc_kctx.errmsg[0] = 0;
}

/* zero-size calls with NULL buffers launch nothing and leave the context clean */
static void empty_calls(void) {
    const uint32_t key[2] = {1, 2};
    long before = simt_launches();
    kc_scale(&kc_kctx, NULL, 0, 2.0f);
    kc_zero(&kc_kctx, NULL, 0);
    kc_copy(&kc_kctx, NULL, NULL, 0);
    kc_dropout(&kc_kctx, NULL, NULL, 0, 0.5f, key, 0, 0, 0);
    kc_gather_rows(&kc_kctx, NULL, NULL, NULL, 0, 4096);
    kc_gather_rows_fill(&kc_kctx, NULL, NULL, NULL, 0, 4096, NULL);
    kc_scatter_rows(&kc_kctx, NULL, NULL, NULL, 0, 4096);
    kc_scatter_add_rows(&kc_kctx, NULL, NULL, NULL, 0, 4096);
    kc_cast(&kc_kctx, NULL, DT_BF16, NULL, DT_F32, 0);
    kc_cast(&kc_kctx, NULL, DT_F32, NULL, DT_F32, 0);
    CHECK(simt_launches() == before);
    CHECK(kc_kctx.err == 0);
}

int main(void) {
    empty_calls();
    const int64_t sizes[] = {0, 1, 31, 257, 4099};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) elementwise(sizes[i]);
    elementwise(64 * 4096); /* a LoRA input of 64 tokens of the 7B (hidden 4096) */
    copy_overlap();

    /* row movers: zero rows / zero width, unit widths 2 (odd D), 4 (D = 2), 16 (D = 8, 4096), misaligned buffers */
    rows_case(5, 0, 8, 0, RANDOM);
    rows_case(5, 3, 0, 0, RANDOM);
    const int64_t Ds[] = {1, 2, 8, 31, 257};
    for (size_t i = 0; i < sizeof Ds / sizeof *Ds; i++)
        for (int off = 0; off < 2; off++) {
            rows_case(1, 1, Ds[i], off, RANDOM);
            rows_case(37, 31, Ds[i], off, RANDOM);
            rows_case(40, 300, Ds[i], off, RANDOM); /* more indices than rows: many repeats, > 128 indices */
            rows_case(300, 300, Ds[i], off, FEW);
        }
    rows_case(3, 5, 8192 + 31, 0, RANDOM); /* scatter_add_rows: two tiles of accumulators, rows named 3 times */
    scatter_add_one_row(1, 31);
    scatter_add_one_row(300, 257);
    /* 7B: the target rows of ~3100 tokens (hidden 4096; a few named twice, as a shared prompt's last row), the CLIP
     * patch rows of 5 tiles (2880 x 1024) */
    rows_case(3100, 3100, 4096, 0, FEW);
    rows_case(2880, 2880, 1024, 0, FEW);

    const int64_t csizes[] = {0, 1, 31, 257, 4099, 64 * 4096};
    for (size_t i = 0; i < sizeof csizes / sizeof *csizes; i++) cast_case(csizes[i]);
    cast_refused();
    opctx_release(&kc_rctx);
    TEST_MAIN_END();
}
