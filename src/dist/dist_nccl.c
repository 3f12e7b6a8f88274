/* dist_nccl — the NCCL backend of dist: one process per GPU. Built when CMake finds CUDA and NCCL
 * (ORPO_HAVE_NCCL).
 *
 * The trainer computes on the CPU today, so each transfer stages the host buffer through one device buffer
 * (copy in, NCCL collective on our own stream, copy out). Sums are ncclAllReduce's (ncclSum, in fp32 or fp64):
 * the same as the MPI backend to rounding, and reproducible for a fixed world size; for one rank the sum is x
 * itself, so a 1-rank NCCL run equals `none` bit for bit.
 *
 * Start: rank 0 makes the unique id (ncclGetUniqueId); it reaches the other ranks by MPI_Bcast when MPI started
 * the processes (mpirun, srun --mpi=pmix; the MPI backend does the transfer), else through the file
 * OUTPUT_DIR/.nccl-id.<launch> written atomically (temporary + rename, so a reader never sees half of it), where
 * <launch> is unique to this launch: SLURM_JOB_ID.SLURM_STEP_ID.SLURM_RESTART_COUNT, or $ORPO_DIST_ID. The
 * communicator is nonblocking (config.blocking = 0): every NCCL call and every stream is polled with a deadline
 * and ncclCommGetAsyncError; a timeout or an asynchronous error fails the rank, and dist_close then calls
 * ncclCommAbort (never ncclCommDestroy, which may wait for the dead peer) and ends the process. NCCL cannot tell
 * which peer is missing: the message says so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist_internal.h"
#include "io/log.h"
#include "io/mem.h"

#ifndef ORPO_HAVE_NCCL

int dist_nccl_built(void) { return 0; }

int dist_nccl_open(dist *d, const dist_opts *o) {
    (void)d, (void)o;
    return err_set(ERR_ARGS, "runtime.data_parallel: nccl, but this orpo-hpc was built without NCCL (CUDA and NCCL "
                   "were not found at build time)");
}

#else

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>

#include "io/atomic.h"
#include "io/fsutil.h"

/* NCCL's functions, loaded when the backend opens (dlopen): a binary that never uses NCCL does not map its ~180 MB
 * (which counts against `ulimit -v`), and runs where NCCL is not installed */
static struct {
    ncclResult_t (*GetUniqueId)(ncclUniqueId *id);
    ncclResult_t (*CommInitRankConfig)(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank, ncclConfig_t *cfg);
    ncclResult_t (*CommGetAsyncError)(ncclComm_t comm, ncclResult_t *err);
    const char *(*GetErrorString)(ncclResult_t r);
    const char *(*GetLastError)(ncclComm_t comm);
    ncclResult_t (*AllReduce)(const void *s, void *r, size_t n, ncclDataType_t t, ncclRedOp_t op, ncclComm_t c,
                              cudaStream_t st);
    ncclResult_t (*AllGather)(const void *s, void *r, size_t n, ncclDataType_t t, ncclComm_t c, cudaStream_t st);
    ncclResult_t (*Broadcast)(const void *s, void *r, size_t n, ncclDataType_t t, int root, ncclComm_t c,
                              cudaStream_t st);
    ncclResult_t (*CommFinalize)(ncclComm_t comm);
    ncclResult_t (*CommDestroy)(ncclComm_t comm);
    ncclResult_t (*CommAbort)(ncclComm_t comm);
} nc;

static int load_nccl(void) {
    static void *lib;
    if (lib) return ERR_OK;
    const char *names[] = {"libnccl.so.2", "libnccl.so"};
    char why[512] = "";
    for (int i = 0; i < 2 && !lib; i++) {
        lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib && i == 0) snprintf(why, sizeof why, "%s", dlerror());
    }
    if (!lib)
        return err_set(ERR_ARGS, "runtime.data_parallel: nccl, but NCCL cannot be loaded (%s): install NCCL "
                       "(libnccl2) or add its directory to LD_LIBRARY_PATH", why);
    struct { void **fn; const char *name; } syms[] = {
        {(void **)&nc.GetUniqueId, "ncclGetUniqueId"}, {(void **)&nc.CommInitRankConfig, "ncclCommInitRankConfig"},
        {(void **)&nc.CommGetAsyncError, "ncclCommGetAsyncError"}, {(void **)&nc.GetErrorString, "ncclGetErrorString"},
        {(void **)&nc.GetLastError, "ncclGetLastError"}, {(void **)&nc.AllReduce, "ncclAllReduce"},
        {(void **)&nc.AllGather, "ncclAllGather"}, {(void **)&nc.Broadcast, "ncclBroadcast"},
        {(void **)&nc.CommFinalize, "ncclCommFinalize"}, {(void **)&nc.CommDestroy, "ncclCommDestroy"},
        {(void **)&nc.CommAbort, "ncclCommAbort"}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        if (!(*syms[i].fn = dlsym(lib, syms[i].name))) {
            dlclose(lib);
            lib = NULL;
            return err_set(ERR_ARGS, "runtime.data_parallel: nccl: the NCCL library has no %s (NCCL >= 2.14 needed)",
                           syms[i].name);
        }
    }
    return ERR_OK;
}

#define CHUNK_BYTES ((size_t)64 << 20) /* device staging buffer */

typedef struct nccl_state {
    ncclComm_t comm;
    cudaStream_t stream;
    void *dbuf;       /* device staging buffer */
    size_t dcap;
    void *hbuf;       /* host: a chunk of the sum */
    size_t hcap;
    dist *mpi;        /* the MPI backend when MPI started us (id broadcast, job abort); else NULL */
} nccl_state;

int dist_nccl_built(void) { return 1; }

static int cuda_fail(dist *d, cudaError_t e, const char *call, const char *what) {
    return dist_fail(d, 0, ERR_IO, "%s failed during %s: %s", call, what, cudaGetErrorString(e));
}

/* until the communicator is ready (no call in progress) and the stream has run everything queued */
static int wait_done(dist *d, nccl_state *s, double deadline, const char *what) {
    double t0 = log_now();
    for (;;) {
        ncclResult_t st = ncclSuccess;
        ncclResult_t r = nc.CommGetAsyncError(s->comm, &st);
        if (r != ncclSuccess) st = r;
        if (st != ncclSuccess && st != ncclInProgress)
            return dist_fail(d, 0, ERR_IO, "NCCL failed during %s: %s (%s)", what, nc.GetErrorString(st),
                             nc.GetLastError(s->comm));
        if (st == ncclSuccess) {
            cudaError_t e = cudaStreamQuery(s->stream);
            if (e == cudaSuccess) return ERR_OK;
            if (e != cudaErrorNotReady) return cuda_fail(d, e, "cudaStreamQuery", what);
        }
        if (log_now() > deadline)
            return dist_fail(d, 0, ERR_IO, "a rank did not answer within %g s during %s: one died, hangs or is far "
                             "slower (NCCL does not say which; see the other ranks' logs; runtime.dist_timeout_s)",
                             d->timeout_s, what);
        dist_pause(t0, 0.05);
    }
}

/* an NCCL call's result: ncclInProgress is fine (wait_done polls it), anything else but success fails */
static int nccl_call(dist *d, nccl_state *s, ncclResult_t r, const char *call, const char *what) {
    if (r == ncclSuccess || r == ncclInProgress) return ERR_OK;
    return dist_fail(d, 0, ERR_IO, "%s failed during %s: %s (%s)", call, what, nc.GetErrorString(r),
                     nc.GetLastError(s->comm));
}

static int stage(dist *d, nccl_state *s, size_t bytes) {
    if (bytes <= s->dcap) return ERR_OK;
    if (s->dbuf) cudaFree(s->dbuf);
    s->dbuf = NULL;
    s->dcap = 0;
    cudaError_t e = cudaMalloc(&s->dbuf, bytes);
    if (e != cudaSuccess) return cuda_fail(d, e, "cudaMalloc", "the data-parallel staging buffer");
    s->dcap = bytes;
    return ERR_OK;
}

static int nccl_fold(dist *d, void *accv, const void *xv, int64_t n, int f64, int has, const char *what) {
    nccl_state *s = d->state;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    int64_t per = (int64_t)(CHUNK_BYTES / es);
    double deadline = dist_deadline(d, 0);
    int rc = stage(d, s, (size_t)(n < per ? n : per) * es);
    if (rc) return rc;
    if ((size_t)(n < per ? n : per) * es > s->hcap) {
        free(s->hbuf);
        s->hcap = (size_t)(n < per ? n : per) * es;
        s->hbuf = mem_alloc(s->hcap, "data parallel: host staging buffer");
    }
    for (int64_t off = 0; off < n; off += per) {
        int64_t cnt = n - off < per ? n - off : per;
        size_t bytes = (size_t)cnt * es;
        cudaError_t e = has ? cudaMemcpyAsync(s->dbuf, (const char *)xv + (size_t)off * es, bytes,
                                              cudaMemcpyHostToDevice, s->stream)
                            : cudaMemsetAsync(s->dbuf, 0, bytes, s->stream);
        if (e != cudaSuccess) return cuda_fail(d, e, "cudaMemcpyAsync", what);
        if ((rc = nccl_call(d, s, nc.AllReduce(s->dbuf, s->dbuf, (size_t)cnt, f64 ? ncclFloat64 : ncclFloat32, ncclSum,
                                                s->comm, s->stream), "ncclAllReduce", what)))
            return rc;
        if ((rc = wait_done(d, s, deadline, what))) return rc;
        e = cudaMemcpyAsync(s->hbuf, s->dbuf, bytes, cudaMemcpyDeviceToHost, s->stream);
        if (e != cudaSuccess) return cuda_fail(d, e, "cudaMemcpyAsync", what);
        if ((rc = wait_done(d, s, deadline, what))) return rc;
        if (f64) {
            double *a = (double *)accv + off;
            const double *b = s->hbuf;
            for (int64_t i = 0; i < cnt; i++) a[i] += b[i];
        } else {
            float *a = (float *)accv + off;
            const float *b = s->hbuf;
            for (int64_t i = 0; i < cnt; i++) a[i] += b[i];
        }
    }
    return ERR_OK;
}

static int nccl_allgather(dist *d, const void *mine, void *all, size_t bytes, const char *what) {
    nccl_state *s = d->state;
    double deadline = dist_deadline(d, 0);
    size_t total = bytes * (size_t)d->world;
    int rc = stage(d, s, total);
    if (rc) return rc;
    char *slot = (char *)s->dbuf + (size_t)d->rank * bytes;
    cudaError_t e = cudaMemcpyAsync(slot, mine, bytes, cudaMemcpyHostToDevice, s->stream);
    if (e != cudaSuccess) return cuda_fail(d, e, "cudaMemcpyAsync", what);
    if ((rc = nccl_call(d, s, nc.AllGather(slot, s->dbuf, bytes, ncclUint8, s->comm, s->stream), "ncclAllGather",
                        what)))
        return rc;
    if ((rc = wait_done(d, s, deadline, what))) return rc;
    e = cudaMemcpyAsync(all, s->dbuf, total, cudaMemcpyDeviceToHost, s->stream);
    if (e != cudaSuccess) return cuda_fail(d, e, "cudaMemcpyAsync", what);
    return wait_done(d, s, deadline, what);
}

static int nccl_bcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    nccl_state *s = d->state;
    double deadline = dist_deadline(d, 0);
    int rc = stage(d, s, bytes);
    if (rc) return rc;
    cudaError_t e;
    if (d->rank == root && (e = cudaMemcpyAsync(s->dbuf, buf, bytes, cudaMemcpyHostToDevice, s->stream)) != cudaSuccess)
        return cuda_fail(d, e, "cudaMemcpyAsync", what);
    if ((rc = nccl_call(d, s, nc.Broadcast(s->dbuf, s->dbuf, bytes, ncclUint8, root, s->comm, s->stream),
                        "ncclBroadcast", what)))
        return rc;
    if ((rc = wait_done(d, s, deadline, what))) return rc;
    if ((e = cudaMemcpyAsync(buf, s->dbuf, bytes, cudaMemcpyDeviceToHost, s->stream)) != cudaSuccess)
        return cuda_fail(d, e, "cudaMemcpyAsync", what);
    return wait_done(d, s, deadline, what);
}

static void nccl_notify(dist *d, const char *text) {
    nccl_state *s = d->state;
    if (s && s->mpi && s->mpi->be->notify) {
        s->mpi->fail_code = d->fail_code;
        s->mpi->be->notify(s->mpi, text);
    }
}

static void release(nccl_state *s) {
    if (s->dbuf) cudaFree(s->dbuf);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(s->hbuf);
    free(s);
}

static int nccl_finalize(dist *d) {
    nccl_state *s = d->state;
    double deadline = dist_deadline(d, 0);
    int rc = nccl_call(d, s, nc.CommFinalize(s->comm), "ncclCommFinalize", "the end of the run");
    if (!rc) rc = wait_done(d, s, deadline, "the end of the run");
    if (rc) return rc;
    nc.CommDestroy(s->comm);
    dist *m = s->mpi;
    release(s);
    d->state = NULL;
    if (m) dist_close(m, ERR_OK);
    return ERR_OK;
}

static void nccl_abort_job(dist *d, int code) {
    nccl_state *s = d->state;
    if (s && s->comm) nc.CommAbort(s->comm);
    if (s && s->mpi) s->mpi->be->abort_job(s->mpi, code);
    _exit(code);
}

static const dist_backend nccl_backend = {nccl_fold, nccl_allgather, nccl_bcast, nccl_notify, nccl_finalize,
                                          nccl_abort_job};

/* the launch's own name for the id file; 0 when there is none */
static int launch_id(char *buf, size_t cap) {
    const char *own = getenv("ORPO_DIST_ID"), *job = getenv("SLURM_JOB_ID");
    if (own && *own) {
        snprintf(buf, cap, "%s", own);
        return 1;
    }
    if (!job || !*job) return 0;
    const char *step = getenv("SLURM_STEP_ID"), *rst = getenv("SLURM_RESTART_COUNT");
    snprintf(buf, cap, "%s.%s.%s", job, step ? step : "x", rst ? rst : "0");
    for (char *p = buf; *p; p++)
        if (*p == '/') *p = '_';
    return 1;
}

/* the id from rank 0 through OUTPUT_DIR/.nccl-id.<launch>; rank 0 removes the file once every rank has joined */
static int id_by_file(dist *d, const dist_opts *o, ncclUniqueId *id, char *path, size_t cap) {
    char tag[256];
    if (!launch_id(tag, sizeof tag))
        return err_set(ERR_ARGS, "runtime.data_parallel: nccl without MPI passes NCCL's id through a file named after "
                       "the launch: start the ranks with srun (Slurm), or set ORPO_DIST_ID to a value unique to "
                       "this launch on every rank");
    snprintf(path, cap, "%s/.nccl-id.%s", o->output_dir ? o->output_dir : ".", tag);
    if (d->rank == 0) return atomic_write_file(path, id, sizeof *id);
    double t0 = log_now(), deadline = t0 + d->timeout_s;
    for (;;) {
        if (fs_exists(path)) {
            char *buf = NULL;
            size_t n = 0;
            int rc = fs_read_all(path, &buf, &n);
            if (!rc && n == sizeof *id) memcpy(id, buf, sizeof *id);
            free(buf);
            if (rc) return rc;
            if (n != sizeof *id)
                return err_set(ERR_IO, "%s: %zu bytes, expected NCCL's id of %zu", path, n, sizeof *id);
            return ERR_OK;
        }
        if (log_now() > deadline)
            return err_set(ERR_IO, "rank 0 did not write NCCL's id %s within %g s (is job.output_dir on a file "
                           "system every node sees?)", path, d->timeout_s);
        usleep(20000);
    }
}

int dist_nccl_open(dist *d, const dist_opts *o) {
    int rc = load_nccl();
    if (rc) return rc;
    nccl_state *s = mem_calloc(1, sizeof *s, "data parallel: NCCL state");
    int ngpu = 0;
    char idpath[4200] = "";
    cudaError_t e = cudaGetDeviceCount(&ngpu);
    if (e != cudaSuccess || ngpu == 0) {
        free(s);
        return err_set(ERR_ARGS, "runtime.data_parallel: nccl, but no GPU is visible to rank %d (%s)", d->rank,
                       e != cudaSuccess ? cudaGetErrorString(e) : "no device");
    }
    if ((e = cudaSetDevice(d->local_rank % ngpu)) != cudaSuccess || (e = cudaStreamCreate(&s->stream)) != cudaSuccess) {
        free(s);
        return err_set(ERR_IO, "rank %d: cudaSetDevice(%d) / cudaStreamCreate: %s", d->rank, d->local_rank % ngpu,
                       cudaGetErrorString(e));
    }
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (d->rank == 0 && nc.GetUniqueId(&id) != ncclSuccess) rc = err_set(ERR_IO, "ncclGetUniqueId failed");
    if (!rc && dist_launched_by_mpi() && dist_mpi_built()) {
        dist *m = mem_calloc(1, sizeof *m, "data parallel state");
        *m = *d;
        m->kind = DIST_MPI;
        if (!(rc = dist_mpi_open(m, o))) {
            s->mpi = m;
            rc = dist_bcast(m, &id, sizeof id, 0, "the broadcast of NCCL's id");
        } else {
            free(m);
        }
    } else if (!rc) {
        rc = id_by_file(d, o, &id, idpath, sizeof idpath);
    }
    if (!rc) {
        ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
        cfg.blocking = 0;
        d->state = s;
        d->be = &nccl_backend;
        ncclResult_t r = nc.CommInitRankConfig(&s->comm, d->world, id, d->rank, &cfg);
        if (r != ncclSuccess && r != ncclInProgress)
            rc = err_set(ERR_IO, "ncclCommInitRankConfig (rank %d of %d) failed: %s", d->rank, d->world,
                         nc.GetErrorString(r));
        if (!rc) rc = wait_done(d, s, log_now() + d->timeout_s, "NCCL's start (ncclCommInitRankConfig)");
    }
    if (!rc && idpath[0]) {
        rc = dist_barrier(d, "NCCL's start");
        if (!rc && d->rank == 0) unlink(idpath);
    }
    if (rc) {
        if (s->comm) nc.CommAbort(s->comm);
        if (idpath[0] && d->rank == 0) unlink(idpath);
        if (s->mpi) {
            s->mpi->be->abort_job(s->mpi, err_exit_code(rc));
        }
        release(s);
        d->state = NULL;
        d->be = NULL;
        d->failed = 0;
        return rc;
    }
    return ERR_OK;
}

#endif
