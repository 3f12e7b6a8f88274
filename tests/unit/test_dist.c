/* dist (src/dist/): the launcher's environment, the choice of backend, and the collectives of one process (the none
 * backend and a NULL dist): fold adds in order, status keeps the error, the others are identities. The MPI backend
 * runs under mpirun in tests/dist/. */
#include "test.h"

#include <stdint.h>

#include "dist/dist.h"
#include "io/err.h"

static void clear_env(void) {
    const char *names[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "PMI_RANK",
                           "PMI_SIZE", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_NTASKS", "RANK",
                           "WORLD_SIZE", "LOCAL_RANK", NULL};
    for (int i = 0; names[i]; i++) unsetenv(names[i]);
}

static void test_env(void) {
    dist_env_info e;
    clear_env();
    dist_env(&e);
    CHECK_EQ_INT(e.world, 1);
    CHECK_EQ_INT(e.rank, 0);
    CHECK_EQ_STR(e.source, "none");
    /* a job step: srun */
    setenv("SLURM_PROCID", "3", 1);
    setenv("SLURM_STEP_NUM_TASKS", "8", 1);
    setenv("SLURM_LOCALID", "1", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.rank, 3);
    CHECK_EQ_INT(e.world, 8);
    CHECK_EQ_INT(e.local_rank, 1);
    CHECK_EQ_STR(e.source, "slurm");
    /* the batch script of a 2-task job is one process: SLURM_NTASKS alone says nothing */
    clear_env();
    setenv("SLURM_PROCID", "0", 1);
    setenv("SLURM_NTASKS", "2", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.world, 1);
    /* mpirun inside an allocation: its variables win over the allocation's */
    setenv("SLURM_STEP_NUM_TASKS", "1", 1);
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "1", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.rank, 1);
    CHECK_EQ_INT(e.world, 2);
    CHECK_EQ_STR(e.source, "mpirun");
    /* nonsense (rank beyond the world, not a number): one process */
    clear_env();
    setenv("RANK", "4", 1);
    setenv("WORLD_SIZE", "4", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.world, 1);
    setenv("RANK", "x", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.world, 1);
    setenv("RANK", "2", 1);
    dist_env(&e);
    CHECK_EQ_INT(e.world, 4);
    CHECK_EQ_STR(e.source, "env");
    clear_env();
}

static void test_open(void) {
    dist_opts o = {DIST_AUTO, 300, ".", 0};
    dist *d = NULL;
    clear_env();
    CHECK_EQ_INT(dist_open(&o, &d), ERR_OK);
    CHECK_EQ_INT(dist_kind(d), DIST_NONE);
    CHECK_EQ_INT(dist_world(d), 1);
    dist_close(d, ERR_OK);
    /* none, but a launcher started two ranks: they would overwrite each other's checkpoints */
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    o.kind = DIST_NONE;
    d = NULL;
    CHECK_EQ_INT(dist_open(&o, &d), ERR_ARGS);
    CHECK(d == NULL);
    CHECK_CONTAINS(err_msg(), "runtime.data_parallel: none, but env started 2 ranks");
    clear_env();
    o.timeout_s = 0;
    CHECK_EQ_INT(dist_open(&o, &d), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "runtime.dist_timeout_s");
    err_clear();
}

static void test_one_process(void) {
    dist_opts o = {DIST_NONE, 300, ".", 0};
    dist *d = NULL;
    CHECK_EQ_INT(dist_open(&o, &d), ERR_OK);
    dist *both[2] = {d, NULL}; /* the none backend and "no dist" behave the same */
    for (int k = 0; k < 2; k++) {
        dist *x = both[k];
        float acc[3] = {1.0f, 2.0f, 3.0f}, v[3] = {0.5f, -2.0f, 1e-8f};
        CHECK_EQ_INT(dist_fold_f32(x, acc, v, 3, 1, "test"), ERR_OK);
        CHECK(acc[0] == 1.5f && acc[1] == 0.0f && acc[2] == 3.0f + 1e-8f);
        CHECK_EQ_INT(dist_fold_f32(x, acc, NULL, 3, 0, "test"), ERR_OK); /* nothing from this rank */
        CHECK(acc[0] == 1.5f);
        double dacc[2] = {0, 1}, dv[2] = {0.25, 0.5};
        CHECK_EQ_INT(dist_fold_f64(x, dacc, dv, 2, 1, "test"), ERR_OK);
        CHECK(dacc[0] == 0.25 && dacc[1] == 1.5);
        int32_t flag = 10;
        CHECK_EQ_INT(dist_max_i32(x, &flag, "test"), ERR_OK);
        CHECK_EQ_INT(flag, 10);
        CHECK_EQ_INT(dist_barrier(x, "test"), ERR_OK);
        char buf[4] = "abc";
        CHECK_EQ_INT(dist_bcast(x, buf, 4, 0, "test"), ERR_OK);
        CHECK_EQ_STR(buf, "abc");
        CHECK_EQ_INT(dist_same_u64(x, 42, "test"), ERR_OK);
        err_set(ERR_DATA, "a bad pair");
        CHECK_EQ_INT(dist_status(x, ERR_DATA, "test"), ERR_DATA);
        CHECK_EQ_STR(err_msg(), "a bad pair");
        CHECK_EQ_INT(dist_status(x, ERR_OK, "test"), ERR_OK);
        CHECK_EQ_INT(dist_rank(x), 0);
        CHECK_EQ_INT(dist_world(x), 1);
    }
    dist_close(d, ERR_DATA); /* one process: returns */
    dist_close(NULL, ERR_OK);
    CHECK_EQ_STR(dist_kind_name(DIST_MPI), "mpi");
    CHECK_EQ_STR(dist_kind_name(DIST_NCCL), "nccl");
}

int main(void) {
    test_env();
    test_open();
    test_one_process();
    TEST_MAIN_END();
}
