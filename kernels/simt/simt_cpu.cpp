// simt_cpu.cpp — the fiber executor of simt_cpu.h: each block's threads as ucontext fibers, barriers as scheduler
// rounds, blocks one after another on the calling thread (forward and backward by turns of launches). Fiber i
// (thread i of every block) starts once per process, with setcontext on its own stack, and runs its thread of each
// block in turn; every switch after that
// (to a barrier and back, to the next block) is _setjmp / _longjmp, which, unlike swapcontext, does not save and
// restore the signal mask with a system call (a launch of a million threads would spend seconds there).
#undef _FORTIFY_SOURCE // longjmp between fiber stacks is what a fiber switch is; the fortified check forbids it
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include "simt/simt_cpu.h"

dim3 simt_thread_idx, simt_block_idx, simt_block_dim, simt_grid_dim;
void (*simt_launch_hook)(int enter);

enum { F_READY, F_BLOCK, F_WARP, F_DONE };

struct fiber {
    ucontext_t uc; // its start (makecontext)
    jmp_buf jb;    // where it waits at a barrier
    int state, made, started;
};

enum { MAX_THREADS = 1024, MAX_WARPS = MAX_THREADS / 32, STACK_BYTES = 64 * 1024 };

static struct {
    fiber *f;
    char *stacks;     // MAX_THREADS stacks, made once
    ucontext_t base;  // a context from getcontext (once), the template of every fiber's start
    jmp_buf sched;    // the scheduler, between two fibers' turns
    int n, cur;
    int block_wait, warp_wait[MAX_WARPS];
    uint64_t slots[MAX_WARPS][32];
    unsigned char *smem;
    size_t smem_cap, smem_bytes;
    void (*body)(void *);
    void *arg;
    const char *name;
    long launches;
} S;

static void die(const char *what) {
    fprintf(stderr, "simt: kernel %s, block (%u,%u,%u): %s\n", S.name, simt_block_idx.x, simt_block_idx.y,
            simt_block_idx.z, what);
    abort();
}

static void set_thread(int i) {
    S.cur = i;
    simt_thread_idx.x = (unsigned)i % simt_block_dim.x;
    simt_thread_idx.y = ((unsigned)i / simt_block_dim.x) % simt_block_dim.y;
    simt_thread_idx.z = (unsigned)i / (simt_block_dim.x * simt_block_dim.y);
}

// the yield of a waiting fiber is below; a fiber that finished its thread waits there too, and the next block
// (or launch) resumes it to run its thread of that block: each fiber stack is started once per process
static void yield(void);
static void trampoline(void) {
    for (;;) {
        S.body(S.arg);
        S.f[S.cur].state = F_DONE;
        yield();
    }
}

// the scheduler gives the turn to fiber i: start it, or resume it where it waits
static void resume(int i) {
    if (_setjmp(S.sched)) return; // it yielded or finished
    fiber *f = &S.f[i];
    if (!f->started) {
        f->started = 1;
        setcontext(&f->uc);
    }
    _longjmp(f->jb, 1);
}

// the running fiber waits: back to the scheduler, on when it is resumed
static void yield(void) {
    if (!_setjmp(S.f[S.cur].jb)) _longjmp(S.sched, 1);
}

extern "C" long simt_launches(void) { return S.launches; }
void *simt_dyn_smem(void) { return S.smem; }
int simt_lane(void) { return S.cur & 31; }

uint64_t *simt_warp_slots(unsigned mask) {
    int w = S.cur >> 5, lanes = S.n - (w << 5) < 32 ? S.n - (w << 5) : 32;
    unsigned need = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
    if ((mask & need) != need) die("a shuffle's mask leaves out lanes of the warp that take part in it");
    return S.slots[w];
}

void simt_sync_block(void) {
    int me = S.cur;
    S.f[me].state = F_BLOCK;
    S.block_wait++;
    yield();
}

void simt_sync_warp(void) {
    int me = S.cur;
    S.f[me].state = F_WARP;
    S.warp_wait[me >> 5]++;
    yield();
}

static void run_block(void) {
    const int n = S.n;
    for (int i = 0; i < n; i++) {
        fiber *f = &S.f[i];
        if (!f->started && !f->made) {
            f->uc = S.base;
            f->uc.uc_stack.ss_sp = S.stacks + (size_t)i * STACK_BYTES;
            f->uc.uc_stack.ss_size = STACK_BYTES;
            f->uc.uc_link = NULL;
            makecontext(&f->uc, trampoline, 0);
            f->made = 1;
        }
        f->state = F_READY;
    }
    S.block_wait = 0;
    memset(S.warp_wait, 0, sizeof S.warp_wait);
    if (S.smem_bytes) memset(S.smem, 0xff, S.smem_bytes);
    // the first sweep goes forward or backward by the block's parity: a race that one parity of barrier counts
    // hides (the fiber that writes too early running last) shows in the blocks of the other
    int done = 0, reverse = (int)((simt_block_idx.x + simt_block_idx.y + simt_block_idx.z) & 1);
    const int nw = (n + 31) / 32;
    while (done < n) {
        int ran = 0;
        for (int k = 0; k < n; k++) {
            int i = reverse ? n - 1 - k : k;
            if (S.f[i].state != F_READY) continue;
            set_thread(i);
            resume(i);
            ran++;
            if (S.f[i].state == F_DONE) done++;
        }
        reverse ^= 1;
        if (done == n) break;
        int released = 0;
        if (S.block_wait && S.block_wait == n - done) {
            for (int i = 0; i < n; i++)
                if (S.f[i].state == F_BLOCK) S.f[i].state = F_READY;
            S.block_wait = 0;
            released = 1;
        }
        for (int w = 0; w < nw; w++) {
            if (!S.warp_wait[w]) continue;
            int live = 0, hi = (w + 1) * 32 < n ? (w + 1) * 32 : n;
            for (int i = w * 32; i < hi; i++) live += S.f[i].state != F_DONE;
            if (S.warp_wait[w] != live) continue;
            for (int i = w * 32; i < hi; i++)
                if (S.f[i].state == F_WARP) S.f[i].state = F_READY;
            S.warp_wait[w] = 0;
            released = 1;
        }
        if (!ran && !released) {
            char msg[160];
            snprintf(msg, sizeof msg, "threads wait at different barriers (%d at __syncthreads, %d finished, the "
                     "rest at a warp barrier): not every thread reaches the same barrier", S.block_wait, done);
            die(msg);
        }
    }
}

void simt_launch(const char *name, dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg) {
    long nt = (long)block.x * block.y * block.z;
    S.name = name;
    if (nt < 1 || nt > MAX_THREADS) die("a block of more than 1024 (or no) threads");
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) die("an empty grid");
    if (!S.f) {
        S.f = (fiber *)calloc(MAX_THREADS, sizeof(fiber));
        S.stacks = (char *)malloc((size_t)MAX_THREADS * STACK_BYTES);
        if (!S.f || !S.stacks) die("out of memory for the fibers");
        getcontext(&S.base);
    }
    if (smem > S.smem_cap) {
        free(S.smem);
        S.smem = (unsigned char *)malloc(smem);
        if (!S.smem) die("out of memory for dynamic shared memory");
        S.smem_cap = smem;
    }
    S.smem_bytes = smem;
    S.n = (int)nt;
    S.body = body;
    S.arg = arg;
    S.launches++;
    simt_block_dim = block;
    simt_grid_dim = grid;
    if (simt_launch_hook) simt_launch_hook(1);
    // blocks forward on even launches, backward on odd ones: a result that depends on the order of the blocks (two
    // blocks writing one place) differs between the two
    const unsigned long nb = (unsigned long)grid.x * grid.y * grid.z, gxy = (unsigned long)grid.x * grid.y;
    for (unsigned long b = 0; b < nb; b++) {
        const unsigned long k = (S.launches & 1) ? nb - 1 - b : b;
        simt_block_idx = dim3((unsigned)(k % grid.x), (unsigned)(k / grid.x % grid.y), (unsigned)(k / gxy));
        run_block();
    }
    if (simt_launch_hook) simt_launch_hook(0);
}
