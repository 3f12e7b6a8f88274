/* dist — data-parallel collectives behind one interface, three backends (docs/parallel.md):
 *   none   one process: every collective is a local copy;
 *   mpi    OpenMPI (or any MPI) between processes on CPUs, host buffers; built when CMake finds MPI
 *          (ORPO_HAVE_MPI);
 *   nccl   NCCL between GPUs, one process per GPU; host buffers are staged through one device buffer (the
 *          trainer computes on the CPU today); built when CMake finds CUDA and NCCL (ORPO_HAVE_NCCL).
 * The rank, the world size and the local rank come from the launcher: Slurm's srun (SLURM_PROCID,
 * SLURM_STEP_NUM_TASKS, SLURM_LOCALID), mpirun (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK, PMI_RANK/PMI_SIZE) or
 * RANK/WORLD_SIZE/LOCAL_RANK. NCCL's unique id goes from rank 0 to the others by MPI_Bcast when MPI started the
 * processes, else through a file written atomically (temporary + rename) in the output directory.
 *
 * Results do not depend on the world size: dist_fold_* adds the contributions in rank order (gathered on
 * rank 0, which adds them one after the other and sends the result back) — never a library reduction, whose
 * order the library picks. With nccl the sum is ncclAllReduce's: the same to fp32 rounding, reproducible for
 * a fixed world size.
 *
 * Failure: every wait has a deadline (dist_opts.timeout_s). A rank that does not answer in time makes the waiting
 * ranks fail with ERR_IO naming it; a rank that fails (any error) tells the others on its way out (dist_close),
 * and they fail with its message. After a failure every collective fails at once; dist_close(d, rc) then ends the
 * whole job (MPI_Abort / ncclCommAbort): a peer may be stuck, and a clean finalize would wait for it forever.
 *
 *   dist_env(&e)                          rank, world and local rank from the environment (world 1 when none)
 *   dist_open(&o, &d)                     start the backend of o.kind (DIST_AUTO: none for one rank, else nccl when
 *                                         a GPU and NCCL are there, else mpi); ERR_ARGS when it is not built
 *   dist_rank(d) / dist_world(d) / dist_local_rank(d) / dist_kind(d) / dist_kind_name(kind)
 *   dist_fold_f32(d, acc, x, n, has, what) acc = (((acc + x_0) + x_1) + ... + x_{w-1}), x_r of rank r, the
 *                                         same on every rank; a rank with has == 0 adds nothing (x unread).
 *                                         acc must hold the same values on every rank before the call
 *   dist_fold_f64(d, acc, x, n, has, what) the same for doubles (loss sums, token counts)
 *   dist_bcast(d, buf, bytes, root, what) rank root's bytes to every rank
 *   dist_barrier(d, what)                 every rank got here
 *   dist_max_i32(d, &v, what)             v = the largest v of all ranks (the stop flag of each step)
 *   dist_status(d, rc, what)              agree on an outcome: ERR_OK when every rank's rc is; else the code and
 *                                         message of the first failed rank (its own rank: its own error stays)
 *   dist_same_u64(d, v, what)             ERR_INTERNAL naming the first rank whose v differs from rank 0's
 *   dist_close(d, rc)                     rc ERR_OK or ERR_INTERRUPTED (an outcome every rank agreed on): finalize;
 *                                         any other: tell the other ranks, then end the job. NULL is fine.
 * `what` names the collective in timeout messages ("the gradient sum of step 12"). A NULL dist is the none
 * backend with one rank, so code that runs without data parallelism passes NULL.
 */
#ifndef ORPO_DIST_H
#define ORPO_DIST_H

#include <stddef.h>
#include <stdint.h>

enum { DIST_AUTO = 0, DIST_NONE = 1, DIST_NCCL = 2, DIST_MPI = 3 }; /* job key order: auto, none, nccl, mpi */

typedef struct dist_env_info {
    int rank, world, local_rank;
    const char *source; /* "slurm", "mpirun", "env" or "none" */
} dist_env_info;

typedef struct dist_opts {
    int kind;               /* DIST_* */
    double timeout_s;       /* deadline of every wait (> 0) */
    const char *output_dir; /* where the NCCL id file goes (nccl without MPI) */
    int want_gpu;           /* runtime.device: 0 cpu, 1 cuda, -1 auto (for DIST_AUTO) */
} dist_opts;

typedef struct dist dist;

void dist_env(dist_env_info *e);
int dist_open(const dist_opts *o, dist **out);
int dist_rank(const dist *d);
int dist_world(const dist *d);
int dist_local_rank(const dist *d);
int dist_kind(const dist *d);
const char *dist_kind_name(int kind);
int dist_fold_f32(dist *d, float *acc, const float *x, int64_t n, int has, const char *what);
int dist_fold_f64(dist *d, double *acc, const double *x, int64_t n, int has, const char *what);
int dist_bcast(dist *d, void *buf, size_t bytes, int root, const char *what);
int dist_barrier(dist *d, const char *what);
int dist_max_i32(dist *d, int32_t *v, const char *what);
int dist_status(dist *d, int rc, const char *what);
int dist_same_u64(dist *d, uint64_t v, const char *what);
void dist_close(dist *d, int rc);

#endif
