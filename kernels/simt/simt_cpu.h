// simt_cpu.h — the CUDA built-ins kernel source uses, for the host compiler: kernels/*.cu run on the CPU.
//
// Each block runs as blockDim.x * y * z fibers (ucontext) on the calling thread, blocks one after another (forward on
// even launches, backward on odd ones, so that a result depending on the order of blocks shows). A fiber
// runs until it finishes or waits at a barrier (__syncthreads: the block; __syncwarp and every shuffle: its warp of
// 32 lanes); the scheduler resumes waiting fibers once every live thread of the group has arrived, sweeping the
// fibers in forward and reverse order by turns (the first sweep by the parity of the block's index), so that a
// kernel whose threads race on shared memory without a barrier tends to give a different answer than the reference.
// Threads waiting at different barriers (a __syncthreads that not every thread reaches) abort with the kernel's
// name: the CUDA program would hang or be undefined. Dynamic shared memory is filled with 0xff bytes (NaN as
// floats) at every block, so that reading it before writing shows.
//
//   simt_launch(name, grid, block, smem, body, arg)   run body(arg) as every thread of the grid (KLAUNCH calls it)
//   simt_launches()                                   kernels launched so far (tests check a kernel really ran)
//   simt_launch_hook                                  when set, called with 1 before a launch runs and 0 after it
//                                                     (simt_ops.cpp's guard opens the device memory to kernels)
#ifndef ORPO_KERNELS_SIMT_CPU_H
#define ORPO_KERNELS_SIMT_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static // blocks run one after another on one thread: a static is the block's shared memory
#define __constant__       // a file-scope table (`static __constant__ float t[16] = {...}`): a plain static array
#define KFULL 0xffffffffu

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

extern dim3 simt_thread_idx, simt_block_idx, simt_block_dim, simt_grid_dim;
#define threadIdx simt_thread_idx
#define blockIdx simt_block_idx
#define blockDim simt_block_dim
#define gridDim simt_grid_dim

void simt_launch(const char *name, dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg);
extern void (*simt_launch_hook)(int enter);
extern "C" long simt_launches(void);
void *simt_dyn_smem(void);
void simt_sync_block(void);
void simt_sync_warp(void);
// this thread's lane and the 32 exchange slots of its warp
int simt_lane(void);
uint64_t *simt_warp_slots(unsigned mask);

#define __syncthreads() simt_sync_block()
#define __syncwarp(...) simt_sync_warp()

// bf16: the bit pattern; conversions as the GPU's __float2bfloat16_rn (nearest even, NaN kept quiet)
struct bf16 {
    uint16_t x;
};
static inline float bf2f(bf16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline bf16 f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    bf16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        b.x = (uint16_t)((u >> 16) | 0x0040u);
        return b;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (uint16_t)(u >> 16);
    return b;
}

// a value through the warp's slots: every lane writes, the warp meets, each reads its source lane, the warp meets
// again (so that no lane overwrites a slot before every lane has read it)
template <class T> static inline T simt_exchange(unsigned mask, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t *slot = simt_warp_slots(mask);
    memcpy(&slot[simt_lane()], &v, sizeof(T));
    simt_sync_warp();
    T r;
    memcpy(&r, &slot[src], sizeof(T));
    simt_sync_warp();
    return r;
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = simt_lane(), src = lane ^ lane_mask;
    if (src >= ((lane + width) & ~(width - 1))) src = lane;
    return simt_exchange(mask, v, src);
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = simt_lane(), src = lane + (int)delta;
    if ((lane & (width - 1)) + (int)delta >= width) src = lane;
    return simt_exchange(mask, v, src);
}
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
    int lane = simt_lane();
    return simt_exchange(mask, v, (lane & ~(width - 1)) + (src_lane & (width - 1)));
}

// integer atomics (fibers switch only at barriers, so a plain read-modify-write is atomic)
static inline int atomicAdd(int *p, int v) {
    int o = *p;
    *p = o + v;
    return o;
}
static inline unsigned atomicAdd(unsigned *p, unsigned v) {
    unsigned o = *p;
    *p = o + v;
    return o;
}

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
// one rounded product / sum that nvcc never contracts into an FMA (the host compiler does not contract: ISO C++)
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }

template <class F> static void simt_call(void *f) { (*(F *)f)(); }

#define SMEM_DYN(T, name) T *name = reinterpret_cast<T *>(simt_dyn_smem())
#define KLAUNCH(k, grid, block, smem, c, ...)                                                                        \
    do {                                                                                                             \
        (void)(c);                                                                                                   \
        auto klaunch_f_ = [&]() { k(__VA_ARGS__); };                                                                 \
        simt_launch(#k, dim3(grid), dim3(block), (smem), simt_call<decltype(klaunch_f_)>, &klaunch_f_);             \
    } while (0)

#endif
