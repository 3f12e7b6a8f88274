/* The CPU backend's memory interface (backend/cpu/cpu_mem.c): aligned zeroed arenas, byte counts per placement
 * (live and peak, the numbers the plan's size table is checked against), copies, and the sticky error: a failed
 * allocation returns NULL, names what it was for, and sync returns it; the first error wins. ops_for picks tables. */
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu_mem.h"
#include "backend/device.h"
#include "backend/ops.h"
#include "backend/tensor.h"
#include "io/err.h"
#include "test.h"

/* the absurd allocation below must fail with NULL under AddressSanitizer too, not abort */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_tables(void) {
    CHECK(ops_for(DEVICE_CPU, DT_F32) == ops_cpu());
    CHECK(ops_for(DEVICE_CPU, DT_BF16) == ops_cpu_bf16());
    CHECK(ops_cpu_bf16() != NULL && ops_cpu_bf16() != ops_cpu());
    CHECK(ops_for(DEVICE_CUDA, DT_BF16) == NULL);
    CHECK(ops_for(DEVICE_CPU, DT_F16) == NULL);
    /* every entry of both tables is set */
    for (int k = 0; k < 2; k++) {
        const ops *o = k ? ops_cpu_bf16() : ops_cpu();
        const void *const *f = (const void *const *)((const char *)o + sizeof(const char *));
        size_t nf = (sizeof(ops) - sizeof(const char *)) / sizeof(void *), set = 0;
        for (size_t i = 0; i < nf; i++) set += f[i] != NULL;
        CHECK_EQ_INT(set, nf);
    }
}

static void test_alloc_counts(void) {
    const ops *o = ops_cpu();
    opctx c = {0};
    size_t live0, peak0, hlive0, live, peak, hlive, hpeak;
    cpu_mem_stats(MEM_DEVICE, &live0, &peak0);
    cpu_mem_stats(MEM_HOST, &hlive0, NULL);
    cpu_mem_stats_reset();
    unsigned char *a = o->mem_alloc(&c, 1000, MEM_DEVICE, "test arena a");
    float *b = o->mem_alloc(&c, 4096, MEM_DEVICE, "test arena b");
    unsigned char *h = o->mem_alloc(&c, 300, MEM_HOST, "test host arena");
    CHECK(a && b && h);
    CHECK_EQ_INT((uintptr_t)a % 64, 0);
    CHECK_EQ_INT((uintptr_t)b % 64, 0);
    int zero = 1;
    for (int i = 0; i < 1000; i++) zero &= a[i] == 0;
    CHECK(zero);
    cpu_mem_stats(MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(live - live0, 5096);
    CHECK_EQ_INT(peak - live0, 5096);
    cpu_mem_stats(MEM_HOST, &hlive, &hpeak);
    CHECK_EQ_INT(hlive - hlive0, 300);
    o->mem_free(&c, a, MEM_DEVICE);
    cpu_mem_stats(MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(live - live0, 4096);
    CHECK_EQ_INT(peak - live0, 5096); /* the high-water mark stays */
    cpu_mem_stats_reset();
    cpu_mem_stats(MEM_DEVICE, &live, &peak);
    CHECK_EQ_INT(peak, live);
    /* copies and memset */
    float src[4] = {1, 2, 3, 4}, back[4] = {0};
    o->upload(&c, b, src, sizeof src);
    o->copy_async(&c, b + 4, b, sizeof src, MEM_D2H);
    o->copy_wait(&c, o->copy_fence(&c));
    o->download(&c, back, b + 4, sizeof back);
    CHECK(!memcmp(back, src, sizeof src));
    o->memset(&c, b, 0, 4 * sizeof(float));
    o->download(&c, back, b, sizeof back);
    CHECK(back[0] == 0 && back[3] == 0);
    o->mem_free(&c, b, MEM_DEVICE);
    o->mem_free(&c, h, MEM_HOST);
    o->mem_free(&c, NULL, MEM_DEVICE);
    cpu_mem_stats(MEM_DEVICE, &live, NULL);
    CHECK_EQ_INT(live, live0);
    CHECK_EQ_INT(c.err, ERR_OK);
    CHECK_EQ_INT(o->sync(&c), ERR_OK);
}

static void test_sticky_error(void) {
    const ops *o = ops_cpu_bf16(); /* shared with the f32 table */
    opctx c = {0};
    size_t live0, live;
    cpu_mem_stats(MEM_DEVICE, &live0, NULL);
    err_clear();
    void *p = o->mem_alloc(&c, SIZE_MAX / 2, MEM_DEVICE, "the absurd test arena");
    CHECK(p == NULL);
    CHECK_EQ_INT(c.err, ERR_IO);
    CHECK_CONTAINS(c.errmsg, "out of memory");
    CHECK_CONTAINS(c.errmsg, "the absurd test arena");
    CHECK_EQ_INT(err_code(), ERR_OK); /* nothing reported before the sync point */
    /* a second failure does not replace the first */
    void *q = o->mem_alloc(&c, SIZE_MAX - 8, MEM_HOST, "the second arena");
    CHECK(q == NULL);
    CHECK_CONTAINS(c.errmsg, "the absurd test arena");
    opctx_fail(&c, ERR_DATA, "later failure");
    CHECK_EQ_INT(c.err, ERR_IO);
    cpu_mem_stats(MEM_DEVICE, &live, NULL);
    CHECK_EQ_INT(live, live0);
    CHECK_EQ_INT(o->sync(&c), ERR_IO);
    CHECK_CONTAINS(err_msg(), "the absurd test arena");
    CHECK_EQ_INT(ops_cpu()->sync(&c), ERR_IO); /* sticky: still there */
    err_clear();
}

int main(void) {
    test_tables();
    test_alloc_counts();
    test_sticky_error();
    TEST_MAIN_END();
}
