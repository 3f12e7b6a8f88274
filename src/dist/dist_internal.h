/* dist_internal — what the backends of dist (dist_mpi.c, dist_nccl.c) share with dist.c. Not for other modules.
 *
 * A backend supplies four transfers; dist.c builds everything else on them and keeps the failure state:
 *   fold(d, acc, x, n, f64, has, what)   acc = acc + x_0 + x_1 + ... (rank order on MPI), every rank gets it
 *   allgather(d, mine, all, bytes, what) all = the `bytes` records of ranks 0..world-1, on every rank
 *   bcast(d, buf, bytes, root, what)
 *   notify(d, text)                      best effort: tell every other rank that this one fails, and why
 *   finalize(d)                          clean end (every rank agreed on the outcome); 0 or an error
 *   abort_job(d, code)                   end every rank of the job now; does not return
 * A backend that finds a peer missing calls dist_fail(d, ERR_IO, ...) and returns its code.
 */
#ifndef ORPO_DIST_INTERNAL_H
#define ORPO_DIST_INTERNAL_H

#include "dist/dist.h"
#include "io/err.h"

#define DIST_NOTE_MAX 1024 /* bytes of a failure notice ("rank 3: message") */

typedef struct dist_backend {
    int (*fold)(dist *d, void *acc, const void *x, int64_t n, int f64, int has, const char *what);
    int (*allgather)(dist *d, const void *mine, void *all, size_t bytes, const char *what);
    int (*bcast)(dist *d, void *buf, size_t bytes, int root, const char *what);
    void (*notify)(dist *d, const char *text);
    int (*finalize)(dist *d);
    void (*abort_job)(dist *d, int code);
} dist_backend;

struct dist {
    int kind, rank, world, local_rank;
    double timeout_s;
    const dist_backend *be;
    void *state;            /* the backend's own */
    int failed;             /* a collective failed or a peer reported a failure: every later call fails */
    int fail_code;
    char fail_msg[DIST_NOTE_MAX];
    int notified;           /* the other ranks were told */
    int agreed_rc;          /* the last failure dist_status made every rank agree on (0: none) */
};

/* record a failure of this rank's view of the job (a missing peer, a notice): sets the error, tells the others
 * (unless `from_peer`: the failure came from another rank's notice) and returns code */
int dist_fail(dist *d, int from_peer, int code, const char *fmt, ...) ERR_PRINTF(4, 5);
/* the deadline of a wait that starts now: rank 0 waits timeout_s; the others a little longer, so that rank 0's
 * verdict (which rank is missing) reaches them before their own deadline */
double dist_deadline(const dist *d, int waits_for_root);
/* acc[i] += x[i] for n values, f64 (double) or float: the fixed-order sum of every backend's fold */
void dist_add_into(void *acc, const void *x, int64_t n, int f64);
/* sleep a little between polls (nothing for the first `spin_s` seconds of a wait) */
void dist_pause(double started, double spin_s);

int dist_mpi_open(dist *d, const dist_opts *o);   /* ERR_ARGS when not built */
int dist_nccl_open(dist *d, const dist_opts *o);  /* ERR_ARGS when not built */
int dist_mpi_built(void);
int dist_nccl_built(void);
int dist_launched_by_mpi(void);                   /* mpirun / srun --mpi started us (MPI_Init can work) */

#endif
