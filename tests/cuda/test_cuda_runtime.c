/* On a machine with a GPU: the CUDA backend's runtime (kernels/cuda_mem.cu, cuda_ctx.h) and its fp32 ops
 * (kernels/f32.cu), without the op kernels of the other families: the context (streams, cuBLASLt handle, the capped
 * workspace, counted in mem_stats), zeroed device and pinned allocations, blocking upload / download, memset,
 * copy_async on the copy stream ordered after the compute stream's earlier work, fences the compute stream waits
 * for, the fp32 ops bit-identical to ops_cpu() (they evaluate the same expressions in the same order), the sticky
 * error (a failing copy names the call; sync returns it; the first one stays), and mem_stats back to where it was
 * after ctx_close. Skipped (77) without a GPU or without CUDA in the build. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/device.h"
#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "test.h"

#ifndef ORPO_HAVE_CUDA
int main(void) {
    printf("skipped: built without CUDA\n");
    return t_pass + t_fail + 77;
}
#else
#include "../kernels/cuda_ctx.h"
#include "../kernels/kops_f32.h"

enum { N = 10007, R = 61, D = 97, NI = 83 };

static float *rnd(int64_t n, uint64_t *s) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(*s >> 40) / 16777216.0) * 2.0f - 1.0f;
    }
    return x;
}

static int same(const float *a, const float *b, int64_t n) { return !memcmp(a, b, sizeof(float) * (size_t)n); }

int main(void) {
    int ng = 0;
    char why[256] = "";
    cudev_count(&ng, why, sizeof why);
    if (ng == 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    ops o;
    memset(&o, 0, sizeof o);
    cuda_mem_fill(&o);
    CHECK(o.mem_alloc && o.sync && o.ctx_open && o.ctx_close && o.host_mem == 0);
    const ops *r = ops_cpu();
    opctx c, rc;
    memset(&c, 0, sizeof c);
    memset(&rc, 0, sizeof rc);
    size_t live0, peak0, live, peak;
    o.mem_stats(&c, MEM_DEVICE, &live0, &peak0);
    int st = o.ctx_open(&c);
    if (st) fprintf(stderr, "%s\n", err_msg());
    CHECK_EQ_INT(st, 0);
    CHECK(c.stream && c.copy_stream && c.blas && c.blas_ws && c.backend);
    CHECK_EQ_INT(c.blas_ws_bytes, OPS_BLAS_WS_CAP);
    o.mem_stats(&c, MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(live - live0, OPS_BLAS_WS_CAP);
    /* zeroed allocations */
    const size_t nb = sizeof(float) * N;
    float *d = o.mem_alloc(&c, nb, MEM_DEVICE, "test a"), *d2 = o.mem_alloc(&c, nb, MEM_DEVICE, "test b");
    float *h = o.mem_alloc(&c, nb, MEM_HOST, "test pinned"), *h2 = o.mem_alloc(&c, nb, MEM_HOST, "test pinned 2");
    CHECK(d && d2 && h && h2);
    float *back = calloc(N, sizeof(float)), *zero = calloc(N, sizeof(float));
    back[0] = 1.0f;
    o.download(&c, back, d, nb);
    CHECK(same(back, zero, N) && same(h, zero, N));
    o.mem_stats(&c, MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(live - live0, OPS_BLAS_WS_CAP + 2 * nb);
    o.mem_stats(&c, MEM_HOST, &live, &peak);
    CHECK(live >= 2 * nb);
    /* upload, the fp32 ops against ops_cpu(), download */
    uint64_t s = 11;
    float *x = rnd(N, &s), *y = rnd(N, &s), *want = malloc(nb);
    memcpy(want, x, nb);
    o.upload(&c, d, x, nb);
    o.upload(&c, d2, y, nb);
    kf_scale(&c, d, N, 0.37f);
    r->scale(&rc, want, N, 0.37f);
    kf_add_inplace(&c, d, d2, N);
    r->add_inplace(&rc, want, y, N);
    int64_t rows[NI], *drows = o.mem_alloc(&c, sizeof rows, MEM_DEVICE, "rows");
    for (int i = 0; i < NI; i++) rows[i] = (i * 7 + 3) % R; /* NI > R: rows repeat */
    o.upload(&c, drows, rows, sizeof rows);
    kf_scatter_add_rows(&c, d, d2, drows, NI, D);
    r->scatter_add_rows(&rc, want, y, rows, NI, D);
    kf_gather_rows(&c, d2, d, drows, NI, D);
    float *g = malloc(nb);
    memcpy(g, y, nb);
    r->gather_rows(&rc, g, want, rows, NI, D);
    o.download(&c, back, d, nb);
    CHECK(same(back, want, N));
    o.download(&c, back, d2, nb);
    CHECK(same(back, g, N));
    kf_scatter_rows(&c, d, d2, drows, 40, D); /* the first 40 rows of the list are distinct */
    r->scatter_rows(&rc, want, g, rows, 40, D);
    kf_copy(&c, d2, d, N);
    o.download(&c, back, d2, nb);
    CHECK(same(back, want, N));
    kf_zero(&c, d2, N);
    o.download(&c, back, d2, nb);
    CHECK(same(back, zero, N));
    CHECK_EQ_INT(o.sync(&c), 0);
    /* copy_async: host -> device on the copy stream, the compute stream waits for its fence */
    memcpy(h, y, nb);
    o.copy_async(&c, d2, h, nb, MEM_H2D);
    uint64_t f = o.copy_fence(&c);
    CHECK(f > 0);
    o.copy_wait(&c, f);
    kf_add_inplace(&c, d, d2, N);
    r->add_inplace(&rc, want, y, N);
    /* device -> host after the compute stream's add: the copy sees it */
    o.copy_async(&c, h2, d, nb, MEM_D2H);
    f = o.copy_fence(&c);
    CHECK_EQ_INT(o.sync(&c), 0);
    CHECK(same(h2, want, N));
    /* many fences: the ring wraps */
    for (int i = 0; i < 3 * CUDA_FENCES; i++) {
        o.copy_async(&c, h2, d, 4, MEM_D2H);
        o.copy_wait(&c, o.copy_fence(&c));
    }
    o.memset(&c, d, 0, nb);
    o.download(&c, back, d, nb);
    CHECK(same(back, zero, N));
    CHECK_EQ_INT(o.sync(&c), 0);
    /* the sticky error: a copy from a bad address fails, names the call, and the first error stays */
    o.download(&c, back, (const void *)(uintptr_t)0x10, 64);
    int e = o.sync(&c);
    CHECK(e != 0);
    CHECK_CONTAINS(err_msg(), "download");
    o.memset(&c, (void *)(uintptr_t)0x10, 0, 64);
    CHECK(o.sync(&c) == e);
    CHECK_CONTAINS(c.errmsg, "download");
    c.err = 0;
    c.errmsg[0] = 0;
    o.mem_free(&c, d, MEM_DEVICE);
    o.mem_free(&c, d2, MEM_DEVICE);
    o.mem_free(&c, drows, MEM_DEVICE);
    o.mem_free(&c, h, MEM_HOST);
    o.mem_free(&c, h2, MEM_HOST);
    o.ctx_close(&c);
    CHECK(c.stream == NULL && c.blas == NULL && c.backend == NULL);
    o.mem_stats(&c, MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(live, live0);
    free(back), free(zero), free(x), free(y), free(want), free(g);
    TEST_MAIN_END();
}
#endif
