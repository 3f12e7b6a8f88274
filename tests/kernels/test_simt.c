/* test_simt — the CPU executor (kernels/simt) and simt.h's reductions, through the test kernels of kernels/ktest.cu:
 *   - warp_sum / block_sum / block_max: every thread gets the value of the documented fixed tree, computed here on
 *     the host in the same order (bit-identical; the inputs span many binades, so that another order would differ,
 *     which the test also checks against a sequential sum)
 *   - __shfl_down_sync / __shfl_sync / __shfl_xor_sync, and __shfl_down_sync at width 16: the source lanes of CUDA
 *   - dynamic shared memory (SMEM_DYN): filled with 0xff bytes (NaN) at each block, shared by the block's threads
 *   - 3-D grids of 3-D blocks: every (block, thread) runs exactly once with its coordinates; an integer atomicAdd in
 *     shared memory and a barrier count the block's threads
 *   - threads waiting at different barriers abort with the kernel's name (in a forked child) */
#include "kcheck.h"

void kt_reduce(opctx *c, float *ws, float *bs, float *bm, const float *in, int nt);
void kt_shuffles(opctx *c, int *out, int nt, int delta, int src, int xmask);
void kt_dyn_smem(opctx *c, float *pre, float *out, const float *in, int nt, int nblocks);
void kt_dims(opctx *c, int *lin, int *coord, int *count, int gx, int gy, int gz, int bx, int by, int bz);
void kt_divergent_barrier(opctx *c, int *out);

/* simt.h's butterfly over 32 lanes: at each step every lane adds (or maxes) the lane at distance o to its own */
static void host_warp(float *v, int is_max) {
    for (int o = 16; o > 0; o >>= 1) {
        float nv[32];
        for (int l = 0; l < 32; l++) nv[l] = is_max ? fmaxf(v[l], v[l ^ o]) : v[l] + v[l ^ o];
        memcpy(v, nv, sizeof nv);
    }
}

/* block_sum / block_max: each warp's butterfly, then a butterfly over the warps' results (0 / -inf beyond them) */
static float host_block(const float *in, int nt, int is_max) {
    float red[32], lanes[32];
    const int nw = nt / 32;
    for (int w = 0; w < nw; w++) {
        memcpy(lanes, in + 32 * w, sizeof lanes);
        host_warp(lanes, is_max);
        red[w] = lanes[0];
    }
    for (int l = 0; l < 32; l++) lanes[l] = l < nw ? red[l] : is_max ? -INFINITY : 0.0f;
    host_warp(lanes, is_max);
    return lanes[0];
}

static void reduce_case(int nt) {
    uint64_t s = 0x7ee0000u + (uint64_t)nt;
    float *in = kc_f32(nt, &s, 1.0f), *ws = kc_f32(nt, &s, 0), *bs = kc_f32(nt, &s, 0), *bm = kc_f32(nt, &s, 0);
    for (int t = 0; t < nt; t++) in[t] = ldexpf(in[t], (t * 7) % 25 - 12);
    long before = simt_launches();
    kt_reduce(&kc_kctx, ws, bs, bm, in, nt);
    KC_RAN(before);
    const float want_sum = host_block(in, nt, 0), want_max = host_block(in, nt, 1);
    int bad = 0;
    for (int w = 0; w < nt / 32; w++) {
        float lanes[32];
        memcpy(lanes, in + 32 * w, sizeof lanes);
        host_warp(lanes, 0);
        for (int l = 0; l < 32; l++) bad += memcmp(&ws[32 * w + l], &lanes[l], 4) != 0;
    }
    for (int t = 0; t < nt; t++) bad += memcmp(&bs[t], &want_sum, 4) != 0 || memcmp(&bm[t], &want_max, 4) != 0;
    if (bad) fprintf(stderr, "  reduce nt=%d: %d values differ from the host tree (block sum %.9g vs %.9g)\n", nt, bad,
                     (double)bs[0], (double)want_sum);
    CHECK(bad == 0);
    float seq = 0.0f, mx = -INFINITY;
    for (int t = 0; t < nt; t++) seq += in[t], mx = in[t] > mx ? in[t] : mx;
    CHECK(want_max == mx);
    if (nt >= 256) CHECK(seq != want_sum); /* the inputs tell the orders apart: the bit check above means something */
    free(in), free(ws), free(bs), free(bm);
}

static void shuffle_case(int nt, int delta, int src, int xmask) {
    int *out = malloc(sizeof(int) * 4 * (size_t)nt), bad = 0;
    kt_shuffles(&kc_kctx, out, nt, delta, src, xmask);
    for (int t = 0; t < nt; t++) {
        const int lane = t & 31, w0 = t - lane;
        /* CUDA: a source lane beyond the warp (or beyond the width-16 segment) leaves the value unchanged */
        int down = lane + delta < 32 ? t + delta : t;
        int down16 = (lane & 15) + delta < 16 ? t + delta : t;
        bad += out[t] != down;
        bad += out[nt + t] != w0 + (src & 31);
        bad += out[2 * nt + t] != w0 + (lane ^ xmask);
        bad += out[3 * nt + t] != down16;
    }
    if (bad) fprintf(stderr, "  shuffles nt=%d delta=%d src=%d xor=%d: %d wrong lanes\n", nt, delta, src, xmask, bad);
    CHECK(bad == 0);
    free(out);
}

static void dyn_smem_case(int nt, int nblocks) {
    const int64_t n = (int64_t)nt * nblocks;
    uint64_t s = 0xd50000u + (uint64_t)n;
    float *in = kc_f32(n, &s, 1.0f), *pre = kc_f32(n, &s, 1.0f), *out = kc_f32(n, &s, 1.0f);
    kt_dyn_smem(&kc_kctx, pre, out, in, nt, nblocks);
    int bad_pre = 0, bad = 0;
    for (int b = 0; b < nblocks; b++)
        for (int t = 0; t < nt; t++) {
            bad_pre += !isnan(pre[(int64_t)b * nt + t]);
            bad += memcmp(&out[(int64_t)b * nt + t], &in[(int64_t)b * nt + nt - 1 - t], 4) != 0;
        }
    if (bad_pre || bad) fprintf(stderr, "  dyn smem nt=%d blocks=%d: %d not NaN before writing, %d wrong\n", nt,
                                nblocks, bad_pre, bad);
    CHECK(bad_pre == 0);
    CHECK(bad == 0);
    free(in), free(pre), free(out);
}

static void dims_case(int gx, int gy, int gz, int bx, int by, int bz) {
    const int nb = bx * by * bz, n = gx * gy * gz * nb;
    int *lin = malloc(sizeof(int) * (size_t)n), *coord = malloc(sizeof(int) * (size_t)n);
    int *count = malloc(sizeof(int) * (size_t)n), bad = 0;
    for (int i = 0; i < n; i++) lin[i] = coord[i] = count[i] = -1;
    kt_dims(&kc_kctx, lin, coord, count, gx, gy, gz, bx, by, bz);
    for (int i = 0; i < n; i++) {
        int b = i / nb, t = i % nb;
        int tx = t % bx, ty = t / bx % by, tz = t / (bx * by), x = b % gx, y = b / gx % gy, z = b / (gx * gy);
        int want = tx | ty << 4 | tz << 8 | x << 12 | y << 16 | z << 20;
        bad += lin[i] != i || coord[i] != want || count[i] != nb;
    }
    if (bad) fprintf(stderr, "  dims grid (%d,%d,%d) block (%d,%d,%d): %d wrong threads\n", gx, gy, gz, bx, by, bz, bad);
    CHECK(bad == 0);
    free(lin), free(coord), free(count);
}

static void divergent(void) {
    int out[32];
    kt_divergent_barrier(&kc_kctx, out);
}

int main(void) {
    const int nts[] = {32, 96, 256, 1024};
    for (size_t i = 0; i < sizeof nts / sizeof *nts; i++) reduce_case(nts[i]);
    shuffle_case(64, 1, 0, 1);
    shuffle_case(64, 5, 17, 6);
    shuffle_case(96, 16, 31, 31);
    dyn_smem_case(32, 1);
    dyn_smem_case(160, 3);
    dyn_smem_case(1024, 2);
    dims_case(1, 1, 1, 32, 1, 1);
    dims_case(2, 3, 2, 4, 3, 2);
    dims_case(3, 1, 2, 8, 2, 3);
    dims_case(1, 2, 1, 1, 1, 5);

    char err[2048];
    int st = test_child(divergent, 0, err, sizeof err);
    CHECK_EQ_INT(st, 128 + 6); /* SIGABRT */
    CHECK_CONTAINS(err, "divergent_barrier_k");
    CHECK_CONTAINS(err, "different barriers");
    opctx_release(&kc_rctx); /* unused here (kcheck.h defines it for the op tests) */
    TEST_MAIN_END();
}
