/* dist — the launcher's environment, the choice of backend, the none backend, and the collectives every backend
 * shares (see dist.h). */
#include "dist/dist.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/device.h"
#include "dist/dist_internal.h"
#include "io/err.h"
#include "io/log.h"
#include "io/mem.h"

/* ---- the environment -------------------------------------------------------------------------------- */

static int env_int(const char *name, int *v) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end;
    long x = strtol(s, &end, 10);
    if (*end || x < 0 || x > (1 << 20)) return 0;
    *v = (int)x;
    return 1;
}

void dist_env(dist_env_info *e) {
    int r, w, l = 0;
    e->rank = 0;
    e->world = 1;
    e->local_rank = 0;
    e->source = "none";
    /* mpirun first: inside a Slurm allocation its processes also see the allocation's SLURM_* variables */
    if (env_int("OMPI_COMM_WORLD_RANK", &r) && env_int("OMPI_COMM_WORLD_SIZE", &w)) {
        env_int("OMPI_COMM_WORLD_LOCAL_RANK", &l);
        e->source = "mpirun";
    } else if (env_int("PMI_RANK", &r) && env_int("PMI_SIZE", &w)) {
        env_int("MPI_LOCALRANKID", &l);
        e->source = "mpirun";
    } else if (env_int("SLURM_PROCID", &r) && env_int("SLURM_STEP_NUM_TASKS", &w)) {
        /* a job step (srun): SLURM_STEP_NUM_TASKS; the batch script itself is one process whatever --ntasks says */
        env_int("SLURM_LOCALID", &l);
        e->source = "slurm";
    } else if (env_int("RANK", &r) && env_int("WORLD_SIZE", &w)) {
        env_int("LOCAL_RANK", &l);
        e->source = "env";
    } else {
        return;
    }
    if (w < 1 || r >= w) return; /* nonsense: one process */
    e->rank = r;
    e->world = w;
    e->local_rank = l;
}

int dist_launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

/* ---- helpers of the backends ------------------------------------------------------------------------- */

int dist_fail(dist *d, int from_peer, int code, const char *fmt, ...) {
    char msg[DIST_NOTE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!d->failed) {
        d->failed = 1;
        d->fail_code = code;
        snprintf(d->fail_msg, sizeof d->fail_msg, "%s", msg);
    }
    if (from_peer) d->notified = 1; /* the failing rank told everyone already */
    if (!d->notified && d->be && d->be->notify) {
        d->notified = 1;
        d->be->notify(d, d->fail_msg);
    }
    return err_set(d->fail_code, "%s", d->fail_msg);
}

double dist_deadline(const dist *d, int waits_for_root) {
    double t = d->timeout_s;
    if (waits_for_root && d->rank != 0) t += (t * 0.5 < 30 ? t * 0.5 : 30) + 1;
    return log_now() + t;
}

void dist_pause(double started, double spin_s) {
    if (log_now() - started < spin_s) return;
    struct timespec ts = {0, 200000}; /* 0.2 ms */
    nanosleep(&ts, NULL);
}

/* ---- the none backend: one process ------------------------------------------------------------------- */

void dist_add_into(void *acc, const void *x, int64_t n, int f64) {
    if (f64) {
        double *a = acc;
        const double *b = x;
        for (int64_t i = 0; i < n; i++) a[i] += b[i];
    } else {
        float *a = acc;
        const float *b = x;
        for (int64_t i = 0; i < n; i++) a[i] += b[i];
    }
}

static int none_fold(dist *d, void *acc, const void *x, int64_t n, int f64, int has, const char *what) {
    (void)d, (void)what;
    if (has) dist_add_into(acc, x, n, f64);
    return ERR_OK;
}

static int none_allgather(dist *d, const void *mine, void *all, size_t bytes, const char *what) {
    (void)d, (void)what;
    memcpy(all, mine, bytes);
    return ERR_OK;
}

static int none_bcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    (void)d, (void)buf, (void)bytes, (void)root, (void)what;
    return ERR_OK;
}

static int none_finalize(dist *d) {
    (void)d;
    return ERR_OK;
}

static const dist_backend none_backend = {none_fold, none_allgather, none_bcast, NULL, none_finalize, NULL};

/* ---- open ------------------------------------------------------------------------------------------- */

const char *dist_kind_name(int kind) {
    static const char *names[] = {"auto", "none", "nccl", "mpi"};
    return kind >= 0 && kind <= DIST_MPI ? names[kind] : "?";
}

int dist_open(const dist_opts *o, dist **out) {
    *out = NULL;
    dist_env_info e;
    dist_env(&e);
    int kind = o->kind;
    if (kind == DIST_AUTO) {
        int ngpu = 0;
        if (o->want_gpu != 0 && dist_nccl_built()) device_cuda_count(&ngpu);
        if (e.world == 1) kind = DIST_NONE;
        else if (ngpu > 0) kind = DIST_NCCL;
        else if (dist_mpi_built()) kind = DIST_MPI;
        else
            return err_set(ERR_ARGS, "%s started %d ranks, but this orpo-hpc has neither MPI nor NCCL built in (no "
                           "MPI found at build time: install libopenmpi-dev and rebuild); or start one process",
                           e.source, e.world);
    }
    if (kind == DIST_NONE && e.world > 1)
        return err_set(ERR_ARGS, "runtime.data_parallel: none, but %s started %d ranks: each would train alone and "
                       "write the same checkpoints; use runtime.data_parallel: auto (or mpi / nccl), or start one "
                       "process", e.source, e.world);
    if (!(o->timeout_s > 0)) return err_set(ERR_ARGS, "runtime.dist_timeout_s: %g, expected > 0", o->timeout_s);
    dist *d = mem_calloc(1, sizeof *d, "data parallel state");
    d->kind = kind;
    d->rank = e.rank;
    d->world = e.world;
    d->local_rank = e.local_rank;
    d->timeout_s = o->timeout_s;
    int rc = ERR_OK;
    if (kind == DIST_NONE) {
        d->be = &none_backend;
        d->rank = 0;
        d->world = 1;
    } else if (kind == DIST_MPI) {
        rc = dist_mpi_open(d, o);
    } else {
        rc = dist_nccl_open(d, o);
    }
    if (rc) {
        free(d);
        return rc;
    }
    if (d->rank != 0) {
        /* one log is enough: the other ranks say only warnings and errors, with their rank in front */
        char name[64];
        snprintf(name, sizeof name, "orpo-hpc[rank %d]", d->rank);
        log_set_name(name);
        if (log_level() > LOG_WARN && !getenv("ORPO_LOG_ALL_RANKS")) log_set_level(LOG_WARN);
    }
    if (kind != DIST_NONE) {
        char host[256] = "?";
        gethostname(host, sizeof host - 1);
        log_info("data parallel: %s, %d ranks (from %s); this is rank %d (local %d, pid %ld, host %s); timeout %g s",
                 dist_kind_name(kind), d->world, e.source, d->rank, d->local_rank, (long)getpid(), host, d->timeout_s);
    }
    *out = d;
    return ERR_OK;
}

int dist_rank(const dist *d) { return d ? d->rank : 0; }
int dist_world(const dist *d) { return d ? d->world : 1; }
int dist_local_rank(const dist *d) { return d ? d->local_rank : 0; }
int dist_kind(const dist *d) { return d ? d->kind : DIST_NONE; }

/* ---- collectives -------------------------------------------------------------------------------------- */

static int failed_already(dist *d) { return err_set(d->fail_code, "%s", d->fail_msg); }

int dist_fold_f32(dist *d, float *acc, const float *x, int64_t n, int has, const char *what) {
    if (!d) return none_fold(NULL, acc, x, n, 0, has, what);
    if (d->failed) return failed_already(d);
    return n > 0 ? d->be->fold(d, acc, x, n, 0, has, what) : ERR_OK;
}

int dist_fold_f64(dist *d, double *acc, const double *x, int64_t n, int has, const char *what) {
    if (!d) return none_fold(NULL, acc, x, n, 1, has, what);
    if (d->failed) return failed_already(d);
    return n > 0 ? d->be->fold(d, acc, x, n, 1, has, what) : ERR_OK;
}

int dist_bcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    if (!d) return ERR_OK;
    if (d->failed) return failed_already(d);
    if (root < 0 || root >= d->world) return err_set(ERR_INTERNAL, "dist_bcast: root %d of %d ranks", root, d->world);
    return bytes ? d->be->bcast(d, buf, bytes, root, what) : ERR_OK;
}

static int gather(dist *d, const void *mine, void **all, size_t bytes, const char *what) {
    *all = mem_alloc(bytes * (size_t)d->world, "data parallel: a gathered record per rank");
    int rc = d->be->allgather(d, mine, *all, bytes, what);
    if (rc) {
        free(*all);
        *all = NULL;
    }
    return rc;
}

int dist_barrier(dist *d, const char *what) {
    if (!d) return ERR_OK;
    if (d->failed) return failed_already(d);
    char one = 1;
    void *all;
    int rc = gather(d, &one, &all, 1, what);
    free(all);
    return rc;
}

int dist_max_i32(dist *d, int32_t *v, const char *what) {
    if (!d) return ERR_OK;
    if (d->failed) return failed_already(d);
    void *all;
    int rc = gather(d, v, &all, sizeof *v, what);
    if (rc) return rc;
    const int32_t *a = all;
    for (int r = 0; r < d->world; r++)
        if (a[r] > *v) *v = a[r];
    free(all);
    return ERR_OK;
}

typedef struct status_rec {
    int32_t rc;
    char msg[DIST_NOTE_MAX - 4];
} status_rec;

int dist_status(dist *d, int rc, const char *what) {
    if (!d) return rc;
    if (d->failed) return failed_already(d);
    status_rec mine;
    memset(&mine, 0, sizeof mine);
    mine.rc = rc;
    if (rc) snprintf(mine.msg, sizeof mine.msg, "%s", err_msg());
    void *all;
    int grc = gather(d, &mine, &all, sizeof mine, what);
    if (grc) return grc;
    const status_rec *a = all;
    int out = ERR_OK;
    if (rc) {
        out = rc; /* this rank's own error and message stay */
    } else {
        for (int r = 0; r < d->world; r++) {
            if (!a[r].rc) continue;
            out = err_set(a[r].rc, "rank %d: %s", r, a[r].msg);
            break;
        }
    }
    free(all);
    if (out) d->agreed_rc = out;
    return out;
}

int dist_same_u64(dist *d, uint64_t v, const char *what) {
    if (!d) return ERR_OK;
    if (d->failed) return failed_already(d);
    void *all;
    int rc = gather(d, &v, &all, sizeof v, what);
    if (rc) return rc;
    const uint64_t *a = all;
    for (int r = 1; r < d->world && !rc; r++)
        if (a[r] != a[0])
            rc = err_set(ERR_INTERNAL, "%s: rank %d holds %016llx, rank 0 %016llx: the ranks do not agree", what, r,
                         (unsigned long long)a[r], (unsigned long long)a[0]);
    free(all);
    if (rc) d->agreed_rc = rc; /* every rank saw the same values, hence the same verdict */
    return rc;
}

void dist_close(dist *d, int rc) {
    if (!d) return;
    if (d->kind == DIST_NONE) {
        free(d);
        return;
    }
    int clean = !d->failed && (rc == ERR_OK || rc == ERR_INTERRUPTED || rc == d->agreed_rc);
    if (clean) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s", err_msg()); /* the run's own error stays the one reported */
        int brc = dist_barrier(d, "the end of the run");
        if (!brc) brc = d->be->finalize(d);
        if (!brc) {
            if (rc) err_set(rc, "%s", msg);
            free(d);
            return;
        }
        rc = brc;
    }
    /* a failure the other ranks may not know of: tell them, say it here (this process does not return), end all */
    if (!d->failed) dist_fail(d, 0, rc ? rc : ERR_INTERNAL, "%s", err_msg());
    else if (!d->notified) dist_fail(d, 0, d->fail_code, "%s", d->fail_msg);
    log_error("%s", d->fail_msg);
    log_error("data parallel: rank %d ends every rank of the job (exit %d)", d->rank, err_exit_code(d->fail_code));
    fflush(stderr);
    fflush(stdout);
    d->be->abort_job(d, err_exit_code(d->fail_code));
    _exit(err_exit_code(d->fail_code)); /* not reached */
}
