/* dist_mpi — the MPI backend of dist (CPU buffers). Built when CMake finds MPI (ORPO_HAVE_MPI).
 *
 * Every transfer is a nonblocking point-to-point call waited for by polling, with a deadline: a blocking MPI call
 * would wait for a dead or stuck peer forever. Reductions go through rank 0, which receives the contributions
 * one rank after the other (so it knows which rank is missing when one does not come) and adds them in rank
 * order, then sends the result to each rank. Every rank keeps a receive posted for a failure notice (tag
 * TAG_NOTE): a rank that fails tells the others, who stop waiting at once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/dist_internal.h"
#include "io/log.h"
#include "io/mem.h"

#ifndef ORPO_HAVE_MPI

int dist_mpi_built(void) { return 0; }

int dist_mpi_open(dist *d, const dist_opts *o) {
    (void)d, (void)o;
    return err_set(ERR_ARGS, "runtime.data_parallel: mpi, but this orpo-hpc was built without MPI (none found at "
                   "build time: install libopenmpi-dev, then rebuild)");
}

#else

#include <mpi.h>

enum { TAG_FOLD = 101, TAG_FOLD_RESULT, TAG_GATHER, TAG_GATHER_RESULT, TAG_BCAST, TAG_NOTE = 199 };

/* elements per message of a fold: counts stay far below INT_MAX and rank 0's receive buffer stays small */
#define CHUNK ((int64_t)1 << 24)

typedef struct mpi_state {
    MPI_Comm comm;
    MPI_Request note_req;       /* the posted receive of a failure notice */
    char note_in[DIST_NOTE_MAX];
    char note_out[DIST_NOTE_MAX];
    void *buf;                  /* rank 0: one contribution being received */
    size_t cap;
    int inited;                 /* this module called MPI_Init */
} mpi_state;

int dist_mpi_built(void) { return 1; }

/* a failure notice from another rank: its code (4 bytes) then its message */
static int check_note(dist *d, mpi_state *s) {
    int flag = 0;
    MPI_Status st;
    if (s->note_req == MPI_REQUEST_NULL || MPI_Test(&s->note_req, &flag, &st) != MPI_SUCCESS || !flag) return ERR_OK;
    int32_t code;
    memcpy(&code, s->note_in, 4);
    s->note_in[DIST_NOTE_MAX - 1] = 0;
    if (code <= 0) code = ERR_INTERNAL;
    return dist_fail(d, 1, code, "rank %d: %s", st.MPI_SOURCE, s->note_in + 4);
}

/* wait for n requests (request i waits for rank peer[i]) until all are done, a notice comes or the deadline passes */
static int wait_reqs(dist *d, mpi_state *s, MPI_Request *req, MPI_Status *st, const int *peer, int n, double deadline,
                     const char *what) {
    double t0 = log_now();
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) {
            if (req[i] == MPI_REQUEST_NULL) continue;
            int flag = 0;
            if (MPI_Test(&req[i], &flag, st ? &st[i] : MPI_STATUS_IGNORE) != MPI_SUCCESS)
                return dist_fail(d, 0, ERR_IO, "MPI failed during %s (with rank %d)", what, peer[i]);
            if (!flag) left++;
        }
        if (!left) return ERR_OK;
        int rc = check_note(d, s);
        if (rc) return rc;
        if (log_now() > deadline) {
            int who = -1;
            for (int i = 0; i < n && who < 0; i++)
                if (req[i] != MPI_REQUEST_NULL) who = peer[i];
            return dist_fail(d, 0, ERR_IO, "rank %d did not answer within %g s during %s: it died, hangs, or is far "
                             "slower than rank %d (runtime.dist_timeout_s)", who, d->timeout_s, what, d->rank);
        }
        dist_pause(t0, 0.05);
    }
}

static void *grow(mpi_state *s, size_t bytes) {
    if (bytes > s->cap) {
        free(s->buf);
        s->buf = mem_alloc(bytes, "data parallel: receive buffer");
        s->cap = bytes;
    }
    return s->buf;
}

/* rank 0 sends `bytes` of buf (type t, count) to every other rank and waits until each took it */
static int send_to_all(dist *d, mpi_state *s, const void *buf, int count, MPI_Datatype t, int tag, double deadline,
                       const char *what) {
    int n = d->world - 1;
    MPI_Request *req = mem_alloc(sizeof *req * (size_t)n, "data parallel: requests");
    int *peer = mem_alloc(sizeof *peer * (size_t)n, "data parallel: requests");
    for (int k = 1; k <= n; k++) {
        peer[k - 1] = k;
        req[k - 1] = MPI_REQUEST_NULL;
        if (MPI_Isend(buf, count, t, k, tag, s->comm, &req[k - 1]) != MPI_SUCCESS) {
            free(req);
            free(peer);
            return dist_fail(d, 0, ERR_IO, "MPI_Isend to rank %d failed during %s", k, what);
        }
    }
    int rc = wait_reqs(d, s, req, NULL, peer, n, deadline, what);
    free(req);
    free(peer);
    return rc;
}

static int mpi_fold(dist *d, void *accv, const void *xv, int64_t n, int f64, int has, const char *what) {
    mpi_state *s = d->state;
    size_t es = f64 ? sizeof(double) : sizeof(float);
    MPI_Datatype t = f64 ? MPI_DOUBLE : MPI_FLOAT;
    double deadline = dist_deadline(d, 1);
    for (int64_t off = 0; off < n; off += CHUNK) {
        int cnt = (int)(n - off < CHUNK ? n - off : CHUNK);
        char *acc = (char *)accv + (size_t)off * es;
        const char *x = has ? (const char *)xv + (size_t)off * es : NULL;
        int rc;
        if (d->rank == 0) {
            if (has) dist_add_into(acc, x, cnt, f64);
            void *in = grow(s, (size_t)cnt * es);
            for (int k = 1; k < d->world; k++) {
                MPI_Request rq = MPI_REQUEST_NULL;
                MPI_Status st;
                if (MPI_Irecv(in, cnt, t, k, TAG_FOLD, s->comm, &rq) != MPI_SUCCESS)
                    return dist_fail(d, 0, ERR_IO, "MPI_Irecv from rank %d failed during %s", k, what);
                if ((rc = wait_reqs(d, s, &rq, &st, &k, 1, deadline, what))) return rc;
                int got = 0;
                MPI_Get_count(&st, t, &got);
                if (got == cnt) dist_add_into(acc, in, cnt, f64);
                else if (got != 0)
                    return dist_fail(d, 0, ERR_INTERNAL, "rank %d sent %d values during %s, expected %d or none", k,
                                     got, what, cnt);
            }
            if ((rc = send_to_all(d, s, acc, cnt, t, TAG_FOLD_RESULT, deadline, what))) return rc;
        } else {
            MPI_Request rq[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
            int peer[2] = {0, 0};
            if (MPI_Isend(has ? x : acc, has ? cnt : 0, t, 0, TAG_FOLD, s->comm, &rq[0]) != MPI_SUCCESS ||
                MPI_Irecv(acc, cnt, t, 0, TAG_FOLD_RESULT, s->comm, &rq[1]) != MPI_SUCCESS)
                return dist_fail(d, 0, ERR_IO, "MPI_Isend/MPI_Irecv with rank 0 failed during %s", what);
            if ((rc = wait_reqs(d, s, rq, NULL, peer, 2, deadline, what))) return rc;
        }
    }
    return ERR_OK;
}

static int mpi_allgather(dist *d, const void *mine, void *all, size_t bytes, const char *what) {
    mpi_state *s = d->state;
    double deadline = dist_deadline(d, 1);
    int rc;
    if (bytes * (size_t)d->world > (size_t)1 << 30)
        return err_set(ERR_INTERNAL, "dist allgather: %zu bytes per rank is too much", bytes);
    if (d->rank == 0) {
        memcpy(all, mine, bytes);
        for (int k = 1; k < d->world; k++) {
            MPI_Request rq = MPI_REQUEST_NULL;
            if (MPI_Irecv((char *)all + (size_t)k * bytes, (int)bytes, MPI_BYTE, k, TAG_GATHER, s->comm, &rq) !=
                MPI_SUCCESS)
                return dist_fail(d, 0, ERR_IO, "MPI_Irecv from rank %d failed during %s", k, what);
            if ((rc = wait_reqs(d, s, &rq, NULL, &k, 1, deadline, what))) return rc;
        }
        return send_to_all(d, s, all, (int)(bytes * (size_t)d->world), MPI_BYTE, TAG_GATHER_RESULT, deadline, what);
    }
    MPI_Request rq[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    int peer[2] = {0, 0};
    if (MPI_Isend(mine, (int)bytes, MPI_BYTE, 0, TAG_GATHER, s->comm, &rq[0]) != MPI_SUCCESS ||
        MPI_Irecv(all, (int)(bytes * (size_t)d->world), MPI_BYTE, 0, TAG_GATHER_RESULT, s->comm, &rq[1]) != MPI_SUCCESS)
        return dist_fail(d, 0, ERR_IO, "MPI_Isend/MPI_Irecv with rank 0 failed during %s", what);
    return wait_reqs(d, s, rq, NULL, peer, 2, deadline, what);
}

static int mpi_bcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    mpi_state *s = d->state;
    if (bytes > (size_t)1 << 30) return err_set(ERR_INTERNAL, "dist_bcast: %zu bytes is too much", bytes);
    double deadline = dist_deadline(d, d->rank != root);
    if (d->rank == root) {
        int n = d->world - 1;
        MPI_Request *req = mem_alloc(sizeof *req * (size_t)n, "data parallel: requests");
        int *peer = mem_alloc(sizeof *peer * (size_t)n, "data parallel: requests");
        int i = 0, rc = ERR_OK;
        for (int k = 0; k < d->world; k++) {
            if (k == root) continue;
            peer[i] = k;
            req[i] = MPI_REQUEST_NULL;
            if (MPI_Isend(buf, (int)bytes, MPI_BYTE, k, TAG_BCAST, s->comm, &req[i]) != MPI_SUCCESS)
                rc = dist_fail(d, 0, ERR_IO, "MPI_Isend to rank %d failed during %s", k, what);
            i++;
        }
        if (!rc) rc = wait_reqs(d, s, req, NULL, peer, n, deadline, what);
        free(req);
        free(peer);
        return rc;
    }
    MPI_Request rq = MPI_REQUEST_NULL;
    if (MPI_Irecv(buf, (int)bytes, MPI_BYTE, root, TAG_BCAST, s->comm, &rq) != MPI_SUCCESS)
        return dist_fail(d, 0, ERR_IO, "MPI_Irecv from rank %d failed during %s", root, what);
    return wait_reqs(d, s, &rq, NULL, &root, 1, deadline, what);
}

/* best effort, at most 2 s: a stuck peer's side may never take it, and that must not stop this rank */
static void mpi_notify(dist *d, const char *text) {
    mpi_state *s = d->state;
    int32_t code = d->fail_code;
    memcpy(s->note_out, &code, 4);
    snprintf(s->note_out + 4, DIST_NOTE_MAX - 4, "%s", text);
    int len = 4 + (int)strlen(s->note_out + 4) + 1;
    MPI_Request *req = mem_alloc(sizeof *req * (size_t)d->world, "data parallel: requests");
    for (int k = 0; k < d->world; k++) {
        req[k] = MPI_REQUEST_NULL;
        if (k != d->rank) MPI_Isend(s->note_out, len, MPI_BYTE, k, TAG_NOTE, s->comm, &req[k]);
    }
    double t0 = log_now();
    for (;;) {
        int flag = 0;
        MPI_Testall(d->world, req, &flag, MPI_STATUSES_IGNORE);
        if (flag || log_now() - t0 > 2.0) break;
        dist_pause(t0, 0.01);
    }
    free(req); /* requests still pending are dropped: the job ends next */
}

static void release(mpi_state *s) {
    free(s->buf);
    free(s);
}

static int mpi_finalize(dist *d) {
    mpi_state *s = d->state;
    if (s->note_req != MPI_REQUEST_NULL) {
        MPI_Cancel(&s->note_req);
        MPI_Wait(&s->note_req, MPI_STATUS_IGNORE);
    }
    MPI_Comm_free(&s->comm);
    int inited = s->inited;
    release(s);
    d->state = NULL;
    if (inited) MPI_Finalize();
    return ERR_OK;
}

static void mpi_abort_job(dist *d, int code) {
    mpi_state *s = d->state;
    MPI_Abort(s ? s->comm : MPI_COMM_WORLD, code);
    _exit(code);
}

static const dist_backend mpi_backend = {mpi_fold, mpi_allgather, mpi_bcast, mpi_notify, mpi_finalize, mpi_abort_job};

int dist_mpi_open(dist *d, const dist_opts *o) {
    (void)o;
    int inited = 0;
    MPI_Initialized(&inited);
    mpi_state *s = mem_calloc(1, sizeof *s, "data parallel: MPI state");
    if (!inited) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(s);
            return err_set(ERR_IO, "MPI_Init failed (started by mpirun or srun --mpi=pmix?)");
        }
        s->inited = 1;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &s->comm);
    MPI_Comm_set_errhandler(s->comm, MPI_ERRORS_RETURN);
    int rank = 0, world = 1;
    MPI_Comm_rank(s->comm, &rank);
    MPI_Comm_size(s->comm, &world);
    if (world != d->world || rank != d->rank) {
        int env_world = d->world, env_rank = d->rank;
        MPI_Comm_free(&s->comm);
        if (s->inited) MPI_Finalize();
        free(s);
        return err_set(ERR_ARGS, "the launcher says rank %d of %d, MPI says rank %d of %d: under Slurm start the "
                       "ranks with `srun --mpi=pmix` (or mpirun inside the allocation), so that MPI sees them all",
                       env_rank, env_world, rank, world);
    }
    d->rank = rank;
    d->world = world;
    s->note_req = MPI_REQUEST_NULL;
    MPI_Irecv(s->note_in, DIST_NOTE_MAX, MPI_BYTE, MPI_ANY_SOURCE, TAG_NOTE, s->comm, &s->note_req);
    d->state = s;
    d->be = &mpi_backend;
    return ERR_OK;
}

#endif
