/* The CPU bf16 mode (ops_cpu_bf16, docs/training.md "bf16 mode"): for every op, on random bf16-representable inputs,
 * the bf16 table's output equals the fp32 reference run on the widened inputs, rounded to bf16 by nearest even (an
 * independent converter, tu_rne), bit for bit; outputs the op accumulates into start from random bf16 values and are
 * rounded once. Wherever an op rounds, the test also checks that truncation would give different bits for some
 * element, so an implementation that truncates (or rounds twice, or skips the rounding) fails here. Data movement
 * moves bf16 values unchanged; fp32 arguments (rstd, lse, dw, biases, norm weights, tables) are the reference's. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "test.h"
#include "test_ops_util.h"

static const ops *F, *B;
static opctx CF, CB;
static uint64_t S = 77;

typedef struct bt { /* a bf16 tensor and its exact fp32 widening */
    uint16_t *b;
    float *f;
    int64_t n;
} bt;

static bt mk(int64_t n, float scale) {
    bt t = {malloc(2 * (size_t)n), malloc(4 * (size_t)n), n};
    tu_bf16_fill(t.b, n, &S, scale);
    for (int64_t i = 0; i < n; i++) t.f[i] = tu_widen(t.b[i]);
    return t;
}

static float *f32(int64_t n, float scale) {
    float *x = malloc(4 * (size_t)n);
    tu_fill(x, n, &S, scale);
    return x;
}

static float *fdup(const float *x, int64_t n) {
    float *y = malloc(4 * (size_t)n);
    memcpy(y, x, 4 * (size_t)n);
    return y;
}

static void rewiden(bt *t) { /* after the bf16 table wrote t->b */
    for (int64_t i = 0; i < t->n; i++) t->f[i] = tu_widen(t->b[i]);
}

static void rel(bt *t) {
    free(t->b);
    free(t->f);
}

static uint16_t trunc16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (uint16_t)(u >> 16);
}

/* got (bf16) == rne(ref) bit for bit; rounds: the op rounds, so truncation must differ somewhere */
static void expect(const char *op, const uint16_t *got, const float *ref, int64_t n, int rounds) {
    int64_t bad = -1, tdiff = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t r = tu_rne(ref[i]);
        if (got[i] != r && bad < 0) bad = i;
        tdiff += trunc16(ref[i]) != r;
    }
    if (bad >= 0)
        fprintf(stderr, "%s: element %lld of %lld: bf16 0x%04x, expected 0x%04x (ref %.9g)\n", op, (long long)bad,
                (long long)n, got[bad], tu_rne(ref[bad]), (double)ref[bad]);
    CHECK(bad < 0);
    if (rounds) {
        if (!tdiff) fprintf(stderr, "%s: truncation would not be detected\n", op);
        CHECK(tdiff > 0);
    }
}

static void expect_f32(const char *op, const float *got, const float *ref, int64_t n) {
    if (!tu_bits_eq(got, ref, 4 * (size_t)n)) fprintf(stderr, "%s: fp32 output differs\n", op);
    CHECK(tu_bits_eq(got, ref, 4 * (size_t)n));
}

enum { M = 5, K = 24, N = 20 };

static void t_linear(void) {
    bt x = mk(M * K, 1), w = mk(N * K, 0.3f), y = mk(M * N, 1), dy = mk(M * N, 1), dx = mk(M * K, 1);
    float *b = f32(N, 0.5f), *yr = malloc(4 * M * N);
    F->linear_fwd(&CF, yr, x.f, w.f, b, M, K, N);
    B->linear_fwd(&CB, y.b, x.b, w.b, b, M, K, N);
    expect("linear_fwd", y.b, yr, M * N, 1);
    float *dwf = f32(N * K, 1), *dwb = fdup(dwf, N * K), *dbf = f32(N, 1), *dbb = fdup(dbf, N), *dxr = fdup(dx.f, M * K);
    F->linear_bwd(&CF, dxr, dwf, dbf, dy.f, x.f, w.f, M, K, N);
    B->linear_bwd(&CB, dx.b, dwb, dbb, dy.b, x.b, w.b, M, K, N);
    expect("linear_bwd dx", dx.b, dxr, M * K, 1);
    expect_f32("linear_bwd dw", dwb, dwf, N * K);
    expect_f32("linear_bwd db", dbb, dbf, N);
    rewiden(&y);
    float *yr2 = fdup(y.f, M * N);
    F->matmul_acc(&CF, yr2, x.f, w.f, M, K, N, 0.75f);
    B->matmul_acc(&CB, y.b, x.b, w.b, M, K, N, 0.75f);
    expect("matmul_acc", y.b, yr2, M * N, 1);
    rel(&x); rel(&w); rel(&y); rel(&dy); rel(&dx);
    free(b); free(yr); free(dwf); free(dwb); free(dbf); free(dbb); free(dxr); free(yr2);
}

static void t_norms(void) {
    enum { R = 6, D = 32 };
    bt x = mk(R * D, 2), y = mk(R * D, 1), dy = mk(R * D, 1), dx = mk(R * D, 1);
    float *w = f32(D, 1), *bb = f32(D, 0.2f), *yr = malloc(4 * R * D);
    float rf[R], rb[R], mf[R], mb[R];
    F->rmsnorm_fwd(&CF, yr, rf, x.f, w, R, D, 1e-5f);
    B->rmsnorm_fwd(&CB, y.b, rb, x.b, w, R, D, 1e-5f);
    expect("rmsnorm_fwd", y.b, yr, R * D, 1);
    expect_f32("rmsnorm_fwd rstd", rb, rf, R);
    float *dwf = f32(D, 1), *dwb = fdup(dwf, D), *dxr = fdup(dx.f, R * D);
    F->rmsnorm_bwd(&CF, dxr, dwf, dy.f, x.f, w, rf, R, D);
    B->rmsnorm_bwd(&CB, dx.b, dwb, dy.b, x.b, w, rb, R, D);
    expect("rmsnorm_bwd", dx.b, dxr, R * D, 1);
    expect_f32("rmsnorm_bwd dw", dwb, dwf, D);
    F->layernorm_fwd(&CF, yr, mf, rf, x.f, w, bb, R, D, 1e-5f);
    B->layernorm_fwd(&CB, y.b, mb, rb, x.b, w, bb, R, D, 1e-5f);
    expect("layernorm_fwd", y.b, yr, R * D, 1);
    expect_f32("layernorm_fwd mean", mb, mf, R);
    float *dbf = f32(D, 1), *dbb = fdup(dbf, D);
    rewiden(&dx);
    memcpy(dxr, dx.f, 4 * R * D);
    F->layernorm_bwd(&CF, dxr, dwf, dbf, dy.f, x.f, w, mf, rf, R, D);
    B->layernorm_bwd(&CB, dx.b, dwb, dbb, dy.b, x.b, w, mb, rb, R, D);
    expect("layernorm_bwd", dx.b, dxr, R * D, 1);
    expect_f32("layernorm_bwd db", dbb, dbf, D);
    rel(&x); rel(&y); rel(&dy); rel(&dx);
    free(w); free(bb); free(yr); free(dwf); free(dwb); free(dxr); free(dbf); free(dbb);
}

static void t_rope_attn(void) {
    enum { T = 6, NQ = 2, NKV = 1, HD = 8 };
    const int32_t pos[T] = {0, 1, 2, 7, 8, 9};
    bt q = mk(T * NQ * HD, 1), k = mk(T * NKV * HD, 1), v = mk(T * NKV * HD, 1);
    float *qr = fdup(q.f, T * NQ * HD);
    F->rope_fwd(&CF, qr, pos, T, NQ, HD, 10000.0f);
    B->rope_fwd(&CB, q.b, pos, T, NQ, HD, 10000.0f);
    expect("rope_fwd", q.b, qr, T * NQ * HD, 1);
    rewiden(&q);
    memcpy(qr, q.f, 4 * T * NQ * HD);
    F->rope_bwd(&CF, qr, pos, T, NQ, HD, 10000.0f);
    B->rope_bwd(&CB, q.b, pos, T, NQ, HD, 10000.0f);
    expect("rope_bwd", q.b, qr, T * NQ * HD, 1);
    rewiden(&q);
    const seq_desc seqs[2] = {{0, 3, 0, -1}, {3, 3, 3, 0}};
    bt out = mk(T * NQ * HD, 1);
    float *outr = malloc(4 * T * NQ * HD), lf[T * NQ], lb[T * NQ];
    F->attn_fwd(&CF, outr, lf, q.f, k.f, v.f, seqs, 2, T, NQ, NKV, HD, 1);
    B->attn_fwd(&CB, out.b, lb, q.b, k.b, v.b, seqs, 2, T, NQ, NKV, HD, 1);
    expect("attn_fwd", out.b, outr, T * NQ * HD, 1);
    expect_f32("attn_fwd lse", lb, lf, T * NQ);
    rewiden(&out);
    bt dout = mk(T * NQ * HD, 1), dq = mk(T * NQ * HD, 1), dk = mk(T * NKV * HD, 1), dv = mk(T * NKV * HD, 1);
    float *dqr = fdup(dq.f, T * NQ * HD), *dkr = fdup(dk.f, T * NKV * HD), *dvr = fdup(dv.f, T * NKV * HD);
    F->attn_bwd(&CF, dqr, dkr, dvr, dout.f, out.f, lf, q.f, k.f, v.f, seqs, 2, T, NQ, NKV, HD, 1);
    B->attn_bwd(&CB, dq.b, dk.b, dv.b, dout.b, out.b, lb, q.b, k.b, v.b, seqs, 2, T, NQ, NKV, HD, 1);
    expect("attn_bwd dq", dq.b, dqr, T * NQ * HD, 1);
    expect("attn_bwd dk", dk.b, dkr, T * NKV * HD, 1);
    expect("attn_bwd dv", dv.b, dvr, T * NKV * HD, 1);
    rel(&q); rel(&k); rel(&v); rel(&out); rel(&dout); rel(&dq); rel(&dk); rel(&dv);
    free(qr); free(outr); free(dqr); free(dkr); free(dvr);
}

typedef void (*un_fn)(opctx *, void *, const void *, int64_t);
typedef void (*unb_fn)(opctx *, void *, const void *, const void *, int64_t);

static void t_elementwise(void) {
    enum { E = 500 };
    const char *names[2] = {"gelu", "quick_gelu"};
    un_fn ff[2] = {F->gelu_fwd, F->quick_gelu_fwd}, fb[2] = {B->gelu_fwd, B->quick_gelu_fwd};
    unb_fn bf[2] = {F->gelu_bwd, F->quick_gelu_bwd}, bb[2] = {B->gelu_bwd, B->quick_gelu_bwd};
    for (int k = 0; k < 2; k++) {
        bt x = mk(E, 3), y = mk(E, 1), dy = mk(E, 1), dx = mk(E, 1);
        float *yr = malloc(4 * E), *dxr = fdup(dx.f, E);
        ff[k](&CF, yr, x.f, E);
        fb[k](&CB, y.b, x.b, E);
        expect(names[k], y.b, yr, E, 1);
        bf[k](&CF, dxr, dy.f, x.f, E);
        bb[k](&CB, dx.b, dy.b, x.b, E);
        expect(names[k], dx.b, dxr, E, 1);
        fb[k](&CB, x.b, x.b, E); /* in place, as the model calls it */
        expect(names[k], x.b, yr, E, 1);
        rel(&x); rel(&y); rel(&dy); rel(&dx);
        free(yr); free(dxr);
    }
    bt g = mk(E, 2), u = mk(E, 2), h = mk(E, 1), dh = mk(E, 1), dg = mk(E, 1), du = mk(E, 1);
    float *hr = malloc(4 * E), *dgr = fdup(dg.f, E), *dur = fdup(du.f, E);
    F->swiglu_fwd(&CF, hr, g.f, u.f, E);
    B->swiglu_fwd(&CB, h.b, g.b, u.b, E);
    expect("swiglu_fwd", h.b, hr, E, 1);
    F->swiglu_bwd(&CF, dgr, dur, dh.f, g.f, u.f, E);
    B->swiglu_bwd(&CB, dg.b, du.b, dh.b, g.b, u.b, E);
    expect("swiglu_bwd dg", dg.b, dgr, E, 1);
    expect("swiglu_bwd du", du.b, dur, E, 1);
    /* add_inplace / add: operands of different magnitudes so that the sum rounds */
    bt a = mk(E, 1), b = mk(E, 0.01f), o = mk(E, 1);
    float *ar = fdup(a.f, E), *orf = malloc(4 * E);
    F->add(&CF, orf, a.f, b.f, E);
    B->add(&CB, o.b, a.b, b.b, E);
    expect("add", o.b, orf, E, 1);
    F->add_inplace(&CF, ar, b.f, E);
    B->add_inplace(&CB, a.b, b.b, E);
    expect("add_inplace", a.b, ar, E, 1);
    rewiden(&a);
    memcpy(ar, a.f, 4 * E);
    F->scale(&CF, ar, E, 0.3f);
    B->scale(&CB, a.b, E, 0.3f);
    expect("scale", a.b, ar, E, 1);
    const uint32_t key[2] = {7, 9};
    F->dropout(&CF, orf, g.f, E, 0.25f, key, 1, 2, 100);
    B->dropout(&CB, o.b, g.b, E, 0.25f, key, 1, 2, 100);
    expect("dropout", o.b, orf, E, 1);
    rel(&g); rel(&u); rel(&h); rel(&dh); rel(&dg); rel(&du); rel(&a); rel(&b); rel(&o);
    free(hr); free(dgr); free(dur); free(ar); free(orf);
}

static void t_embed_logprob(void) {
    enum { V = 40, D = 12, NTOK = 7 };
    float *table = f32(V * D, 1); /* embedding tables stay fp32 */
    const int32_t ids[NTOK] = {3, 0, 39, 3, 17, 5, 22};
    bt y = mk(NTOK * D, 1), dy = mk(NTOK * D, 1);
    float *yr = malloc(4 * NTOK * D);
    F->embed_fwd(&CF, yr, table, ids, NTOK, D);
    B->embed_fwd(&CB, y.b, table, ids, NTOK, D);
    expect("embed_fwd", y.b, yr, NTOK * D, 1);
    float *dtf = f32(V * D, 1), *dtb = fdup(dtf, V * D);
    uint8_t mask[V];
    for (int i = 0; i < V; i++) mask[i] = (uint8_t)(i != 17);
    F->embed_bwd(&CF, dtf, dy.f, ids, mask, NTOK, D);
    B->embed_bwd(&CB, dtb, dy.b, ids, mask, NTOK, D);
    expect_f32("embed_bwd", dtb, dtf, V * D);
    enum { MR = 4 };
    bt lg = mk(MR * V, 4), dl = mk(MR * V, 1);
    const int32_t lab[MR] = {1, 39, 0, 20};
    float lpf[MR], lpb[MR], lsf[MR], lsb[MR], dlp[MR] = {0.5f, -1.0f, 0.25f, 2.0f};
    F->logprob_fwd(&CF, lpf, lsf, lg.f, lab, MR, V);
    B->logprob_fwd(&CB, lpb, lsb, lg.b, lab, MR, V);
    expect_f32("logprob_fwd logp", lpb, lpf, MR);
    expect_f32("logprob_fwd lse", lsb, lsf, MR);
    float *dlr = malloc(4 * MR * V);
    F->logprob_bwd(&CF, dlr, dlp, lsf, lg.f, lab, MR, V);
    B->logprob_bwd(&CB, dl.b, dlp, lsb, lg.b, lab, MR, V);
    expect("logprob_bwd", dl.b, dlr, MR * V, 1);
    rel(&y); rel(&dy); rel(&lg); rel(&dl);
    free(table); free(yr); free(dtf); free(dtb); free(dlr);
}

static void t_rows(void) {
    enum { R = 8, D = 10, NR = 6 };
    bt src = mk(R * D, 1), dst = mk(R * D, 1), fill = mk(D, 1), g = mk(NR * D, 1);
    const int64_t rows[NR] = {2, 7, 2, 0, 5, 2}; /* row 2 three times: scatter_add rounds it once */
    const int64_t frows[NR] = {4, -1, 0, -1, 7, 1};
    float *gr = malloc(4 * NR * D);
    F->gather_rows(&CF, gr, src.f, rows, NR, D);
    B->gather_rows(&CB, g.b, src.b, rows, NR, D);
    expect("gather_rows", g.b, gr, NR * D, 0);
    F->gather_rows_fill(&CF, gr, src.f, frows, NR, D, fill.f);
    B->gather_rows_fill(&CB, g.b, src.b, frows, NR, D, fill.b);
    expect("gather_rows_fill", g.b, gr, NR * D, 0);
    bt small = mk(NR * D, 0.01f);
    float *dr = fdup(dst.f, R * D);
    F->scatter_add_rows(&CF, dr, small.f, rows, NR, D);
    B->scatter_add_rows(&CB, dst.b, small.b, rows, NR, D);
    expect("scatter_add_rows", dst.b, dr, R * D, 1);
    rewiden(&dst);
    memcpy(dr, dst.f, 4 * R * D);
    const int64_t srows[3] = {6, 1, 3};
    F->scatter_rows(&CF, dr, small.f, srows, 3, D);
    B->scatter_rows(&CB, dst.b, small.b, srows, 3, D);
    expect("scatter_rows", dst.b, dr, R * D, 0);
    F->copy(&CF, dr, src.f, R * D);
    B->copy(&CB, dst.b, src.b, R * D);
    expect("copy", dst.b, dr, R * D, 0);
    F->zero(&CF, dr, R * D);
    B->zero(&CB, dst.b, R * D);
    expect("zero", dst.b, dr, R * D, 0);
    rel(&src); rel(&dst); rel(&fill); rel(&g); rel(&small);
    free(gr); free(dr);
}

static void t_vision(void) {
    enum { P = 2, T = 8, p = 4, NP = 4, D = 6, KP = 3 * p * p };
    float *pix = f32(P * 3 * T * T, 1); /* pixels stay fp32: im2col rounds them */
    bt rows = mk(P * NP * KP, 1);
    float *rr = malloc(4 * P * NP * KP);
    F->im2col(&CF, rr, pix, P, T, p);
    B->im2col(&CB, rows.b, pix, P, T, p);
    expect("im2col", rows.b, rr, P * NP * KP, 1);
    bt patch = mk(P * NP * D, 1), h = mk(P * (NP + 1) * D, 1);
    float *cls = f32(D, 1), *pos = f32((NP + 1) * D, 0.1f), *hr = malloc(4 * P * (NP + 1) * D);
    F->vis_embed(&CF, hr, patch.f, cls, pos, P, NP, D);
    B->vis_embed(&CB, h.b, patch.b, cls, pos, P, NP, D);
    expect("vis_embed", h.b, hr, P * (NP + 1) * D, 1);
    rel(&rows); rel(&patch); rel(&h);
    free(pix); free(rr); free(cls); free(pos); free(hr);
}

static void t_shared(void) {
    /* the dtype-explicit ops and memory are the fp32 table's */
    CHECK(B->nf4_dequant == F->nf4_dequant && B->cast == F->cast && B->sumsq == F->sumsq && B->adamw == F->adamw);
    CHECK(B->mem_alloc == F->mem_alloc && B->sync == F->sync && B->copy_async == F->copy_async);
    /* the scratch is the largest any op needed, and is released */
    CHECK(CB.scratch_bytes > 0 && CB.scratch != NULL);
    CHECK(CF.scratch_bytes == 0);
    size_t hw = CB.scratch_bytes;
    bt x = mk(4, 1), y = mk(4, 1);
    B->add(&CB, y.b, x.b, x.b, 4); /* a small op does not shrink it */
    CHECK_EQ_INT(CB.scratch_bytes, hw);
    rel(&x); rel(&y);
    opctx_release(&CB);
    CHECK(CB.scratch == NULL && CB.scratch_bytes == 0);
    CHECK_EQ_INT(B->sync(&CB), ERR_OK);
}

int main(void) {
    F = ops_cpu();
    B = ops_cpu_bf16();
    CHECK(B != NULL && !strcmp(B->name, "cpu-bf16"));
    t_linear();
    t_norms();
    t_rope_attn();
    t_elementwise();
    t_embed_logprob();
    t_rows();
    t_vision();
    t_shared();
    TEST_MAIN_END();
}
