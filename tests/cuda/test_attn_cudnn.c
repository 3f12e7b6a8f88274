/* On a machine with a GPU and a build with cuDNN attention: cuDNN's fused attention (kernels/attn_fused.cu through
 * kernels/cudnn_attn.cpp) against the attention kernels (kernels/attn.cu) on the same GPU, forward and backward,
 * through the run-time self-test (backend/attn_selftest.c, its tolerances derived there): the small shapes of the
 * run-time check, then the 7B decoder's heads (32 query / 8 key-value heads of 128) with a shared prompt of 300
 * tokens and answers of 153 and 101 (several bucket sizes, padding), and the CLIP tower's (16 / 16 heads of 64, two
 * tiles of 577 and 578 tokens, not causal; and causal with a 577-token prefix). The bounds are computed on the host
 * from every allowed (row, head, key) in double: a few seconds at these sizes. Every call must have run through cuDNN (no fallback), and running the same
 * backward twice must give the same bits (the deterministic algorithm: a run resumes bit-identically).
 * Skipped (77) without a GPU, or in a build without cuDNN attention (ORPO_CUDNN off). */
#include <stdio.h>
#include <string.h>

#include "backend/attn_fused.h"
#include "backend/devctx.h"
#include "backend/device.h"
#include "backend/tensor.h"
#include "test.h"

int main(void) {
    int n = 0;
    char why[700] = "";
    cudev_count(&n, why, sizeof why);
    if (n == 0) {
        printf("skipped: %s\n", why);
        return 77;
    }
    if (!afz_ops_cuda()) {
        printf("skipped: this build has no cuDNN attention (ORPO_CUDNN off, or cudnn.h 9 / cudnn_frontend.h not found)\n");
        return 77;
    }
    opctx c;
    if (devctx_open(DEVICE_CUDA, 0, &c, why, sizeof why)) {
        printf("FAIL: GPU 0: %s\n", why);
        return 1;
    }
    const ops *ref = ops_for(DEVICE_CUDA, DT_BF16), *dev = afz_ops_cuda();
    /* the run-time check itself */
    int rc = afz_check_gpu(&c, why, sizeof why);
    printf("run-time check: %s%s\n", rc ? "FAILED: " : "ok", rc ? why : "");
    CHECK_EQ_INT(rc, 0);
    /* the 7B shapes */
    const struct { int nq, nkv, hd, prefix; const char *what; } sh[] = {
        {32, 8, 128, 300, "decoder 32 / 8 heads of 128"}, {16, 16, 64, 577, "tower 16 heads of 64"}};
    for (int i = 0; i < 2; i++) {
        long f0, b0, f1, b1;
        char fw[256];
        double worst = 0;
        afz_counts(&f0, &b0, fw, sizeof fw);
        rc = afz_selftest(ref, dev, &c, sh[i].nq, sh[i].nkv, sh[i].hd, sh[i].prefix, (uint64_t)(40 + i), why,
                          sizeof why, &worst);
        afz_counts(&f1, &b1, fw, sizeof fw);
        printf("%s: %s, worst %.3f of the bound; %ld calls by cuDNN, %ld fell back%s%s\n", sh[i].what,
               rc ? "FAILED" : "ok", worst, f1 - f0, b1 - b0, b1 > b0 ? ": " : "", b1 > b0 ? fw : "");
        if (rc) printf("  %s\n", why);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(b1 - b0, 0);
        CHECK_EQ_INT(f1 - f0, 4);
    }
    /* determinism: the same backward twice, the same bits */
    {
        const int nq = 32, nkv = 8, hd = 128;
        const seq_desc sq[3] = {{0, 300, 0, -1}, {300, 150, 300, 0}, {450, 99, 300, 0}};
        const int64_t T = 549, nqv = T * nq * hd, nkvv = T * nkv * hd;
        const size_t bq = 2 * (size_t)nqv, bk = 2 * (size_t)nkvv;
        uint16_t *h = malloc(bq > bk ? bq : bk), *r1 = malloc(bq), *r2 = malloc(bq), *k1 = malloc(bk), *k2 = malloc(bk);
        uint64_t s = 99;
        void *b[9];
        const size_t sz[9] = {bq, bk, bk, bq, 4 * (size_t)(T * nq), bq, bq, bk, bk};
        for (int i = 0; i < 9; i++) {
            b[i] = dev->mem_alloc(&c, sz[i], MEM_DEVICE, "test buffer");
            for (size_t j = 0; j < sz[i] / 2; j++) {
                s = s * 6364136223846793005ULL + 1442695040888963407ULL;
                h[j] = (uint16_t)(0x3c00 + ((s >> 40) & 0x7f)) ^ (uint16_t)(((s >> 50) & 1) << 15); /* ~ +-0.01 */
            }
            dev->upload(&c, b[i], h, sz[i]);
        }
        void *S = dev->mem_alloc(&c, sizeof sq, MEM_DEVICE, "test descriptors");
        dev->upload(&c, S, sq, sizeof sq);
        /* q k v out lse dout dq dk: lse from a forward first */
        dev->attn_fwd(&c, b[3], b[4], b[0], b[1], b[2], S, 3, T, nq, nkv, hd, 1);
        dev->memset(&c, b[6], 0, bq), dev->memset(&c, b[7], 0, bk);
        dev->attn_bwd(&c, b[6], b[7], NULL, b[5], b[3], b[4], b[0], b[1], b[2], S, 3, T, nq, nkv, hd, 1);
        dev->download(&c, r1, b[6], bq), dev->download(&c, k1, b[7], bk);
        dev->memset(&c, b[6], 0, bq), dev->memset(&c, b[7], 0, bk);
        dev->attn_bwd(&c, b[6], b[7], NULL, b[5], b[3], b[4], b[0], b[1], b[2], S, 3, T, nq, nkv, hd, 1);
        dev->download(&c, r2, b[6], bq), dev->download(&c, k2, b[7], bk);
        CHECK_EQ_INT(dev->sync(&c), 0);
        CHECK(!memcmp(r1, r2, bq));
        CHECK(!memcmp(k1, k2, bk));
        printf("backward twice: dq %s, dk %s\n", memcmp(r1, r2, bq) ? "DIFFERS" : "bit-identical",
               memcmp(k1, k2, bk) ? "DIFFERS" : "bit-identical");
        for (int i = 0; i < 9; i++) dev->mem_free(&c, b[i], MEM_DEVICE);
        dev->mem_free(&c, S, MEM_DEVICE);
        free(h), free(r1), free(r2), free(k1), free(k2);
    }
    devctx_close(DEVICE_CUDA, &c);
    TEST_MAIN_END();
}
