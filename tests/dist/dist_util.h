/* dist_util — what the data-parallel tests (tests/dist/test_*.c, label dist) share: the demo set-up of the crash
 * tests (crash/crash_util.h), `mpirun -np N orpo-hpc ...` as a child process, and bit-exact comparisons of runs made
 * with different world sizes. Header-only; include after test.h.
 *
 * The job is tests/crash/job.yaml.in (88 training pairs) with DU_SETS on top: 3 pairs per micro-batch, so a step of
 * 4 micro-batches (world x grad_accum = 4) takes 12 pairs and the epoch's last step only 4 (step 8: micro-batches of
 * 3 and 1 pairs, two ranks of four idle); 9 steps cross into the second epoch.
 *
 *   du_init()                                  skip (exit 77, with the reason) without MPI in this build or mpirun
 *                                              on the machine; the environment OpenMPI needs in a test (root, two
 *                                              cores: --oversubscribe)
 *   du_start()                                 du_init, a fresh test directory with the demo set-up (cu_setup; a
 *                                              failed set-up ends the test as failed); returns the directory
 *   du_spawn(&c, np, dir, verb, out, extra...) start `[mpirun -np NP] orpo-hpc VERB dir/job.yaml --set
 *                                              job.output_dir=OUT DU_SETS... extra...` (np 0: no mpirun)
 *   du_run(&log, np, dir, verb, out, extra...) the same to its end (at most 600 s); the exit code
 *   du_run_done(np, dir, verb, out, set1, set2, end)  du_run with `--set set1 [--set set2]` (set2 may be NULL)
 *                                              that must exit 0 and log "done at step END"; its output (caller frees)
 *   du_compare(ref, out, nsteps, world, pieces, what)  OUT's checkpoint of step nsteps (written by `world` ranks),
 *                                              its train and val tables, bit for bit against REF's; 0 when identical.
 *                                              pieces: OUT was run in pieces, each validated at its end: REF's val
 *                                              rows must be among OUT's

 *   du_pid_of_rank(log, rank)                  the pid rank `rank` logged (runs with ORPO_LOG_ALL_RANKS=1), or -1
 */
#ifndef ORPO_DIST_UTIL_H
#define ORPO_DIST_UTIL_H

#include "crash/crash_util.h"

static const char *const DU_SETS[] = {
    "train.micro_batch_pairs=3", "train.max_steps=9", "checkpoint.every_steps=3", "eval.every_steps=4",
    "eval.max_pairs=6", "runtime.data_parallel=auto", NULL};

static char du_mpirun_path[1024];

static inline void du_init(void) {
#ifndef ORPO_HAVE_MPI
    printf("SKIP: this orpo-hpc was built without MPI (install libopenmpi-dev and openmpi-bin, then rebuild)\n");
    exit(77);
#endif
    const char *m = getenv("ORPO_MPIEXEC");
    if (m && *m && access(m, X_OK) == 0) {
        snprintf(du_mpirun_path, sizeof du_mpirun_path, "%s", m);
    } else {
        const char *path = getenv("PATH");
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
        for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(du_mpirun_path, sizeof du_mpirun_path, "%s/mpirun", d);
            if (access(du_mpirun_path, X_OK) == 0) break;
            du_mpirun_path[0] = 0;
        }
    }
    if (!du_mpirun_path[0]) {
        printf("SKIP: mpirun not found (apt-get install openmpi-bin)\n");
        exit(77);
    }
    /* OpenMPI refuses root without these; two cores run four ranks only when told to oversubscribe */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    setenv("OMPI_MCA_hwloc_base_binding_policy", "none", 1);
    setenv("ORPO_LOG", "info", 1);
    printf("mpirun: %s\n", du_mpirun_path);
}

static inline const char *du_start(void) {
    du_init();
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        printf("%s: %d passed, %d failed (the demo set-up failed)\n", __FILE__, t_pass, t_fail);
        exit(1);
    }
    return dir;
}

#define DU_MAX_ARGS 48

static inline int du_spawn_v(cu_child *c, int np, const char *dir, const char *verb, const char *out, va_list ap) {
    char *v[DU_MAX_ARGS], nps[16], job[1100], outset[1200];
    int n = 0;
    if (np > 0) {
        snprintf(nps, sizeof nps, "%d", np);
        v[n++] = du_mpirun_path;
        v[n++] = "-np";
        v[n++] = nps;
    }
    snprintf(job, sizeof job, "%s/job.yaml", dir);
    snprintf(outset, sizeof outset, "job.output_dir=%s", out);
    v[n++] = (char *)cu_bin();
    v[n++] = (char *)verb;
    v[n++] = job;
    v[n++] = "--set";
    v[n++] = outset;
    for (int i = 0; DU_SETS[i]; i++) {
        v[n++] = "--set";
        v[n++] = (char *)DU_SETS[i];
    }
    const char *x;
    while (n < DU_MAX_ARGS - 1 && (x = va_arg(ap, const char *)) != NULL) v[n++] = (char *)x;
    v[n] = NULL;
    return cu_spawn(c, v);
}

static inline int du_spawn(cu_child *c, int np, const char *dir, const char *verb, const char *out, ...) {
    va_list ap;
    va_start(ap, out);
    int rc = du_spawn_v(c, np, dir, verb, out, ap);
    va_end(ap);
    return rc;
}

/* the child to its end (at most 600 s, then killed); the exit code, its output in *log (caller frees) */
static inline int du_finish(cu_child *c, char **log) {
    int r = cu_pump(c, cu_now() + 600, NULL, NULL);
    if (r == 0) kill(c->pid, SIGKILL);
    int rc = cu_reap(c);
    if (log) *log = c->out;
    else cu_free(c);
    return r == 0 ? -1 : rc;
}

static inline int du_run(char **log, int np, const char *dir, const char *verb, const char *out, ...) {
    cu_child c;
    va_list ap;
    va_start(ap, out);
    int rc = du_spawn_v(&c, np, dir, verb, out, ap);
    va_end(ap);
    if (rc) return -1;
    return du_finish(&c, log);
}

static inline char *du_run_done(int np, const char *dir, const char *verb, const char *out, const char *set1,
                                const char *set2, int end) {
    char *log = NULL;
    int rc = set2 ? du_run(&log, np, dir, verb, out, "--set", set1, "--set", set2, NULL)
                  : du_run(&log, np, dir, verb, out, "--set", set1, NULL);
    if (rc) fprintf(stderr, "%s np %d %s %s (%s): exit %d\n%s\n", verb, np, set1, set2 ? set2 : "", out, rc,
                    log ? log : "");
    CHECK_EQ_INT(rc, 0);
    char want[64];
    snprintf(want, sizeof want, "done at step %d", end);
    CHECK_CONTAINS(log, want);
    return log;
}

static inline int du_compare(const char *ref, const char *out, int nsteps, int world, int pieces, const char *what) {
    cu_state a, b;
    met_train *ta = NULL, *tb = NULL;
    int64_t na = 0, nb = 0;
    if (cu_load_run(ref, nsteps, &a, &ta, &na)) {
        fprintf(stderr, "%s: cannot read the reference %s: %s\n", what, ref, err_msg());
        return 1;
    }
    if (cu_load_run(out, nsteps, &b, &tb, &nb)) {
        fprintf(stderr, "%s: cannot read %s: %s\n", what, out, err_msg());
        cu_state_free(&a);
        free(ta);
        return 1;
    }
    int bad = 0;
    if (b.s.world_size != world) {
        fprintf(stderr, "%s: the checkpoint says world_size %lld, expected %d\n", what, (long long)b.s.world_size, world);
        bad++;
    }
    b.s.world_size = a.s.world_size; /* the one field that may differ */
    bad += cu_state_diff(&a, &b, what) != 0;
    if (nb != nsteps || na != nsteps) {
        fprintf(stderr, "%s: %lld and %lld train rows, expected %d\n", what, (long long)na, (long long)nb, nsteps);
        bad++;
    }
    bad += cu_train_diff(ta, na, tb, nb, what) != 0;
    met_val *va = NULL, *vb = NULL;
    int64_t nva = 0, nvb = 0;
    char p[1300], q[1300];
    snprintf(p, sizeof p, "%s/metrics.h5", ref);
    snprintf(q, sizeof q, "%s/metrics.h5", out);
    if (met_read_val(p, &va, &nva) || met_read_val(q, &vb, &nvb)) {
        fprintf(stderr, "%s: cannot read the val tables: %s\n", what, err_msg());
        bad++;
    } else if (pieces) {
        /* a run in pieces validated at the end of each piece too: the reference's rows must be there, equal */
        for (int64_t i = 0; i < nva; i++) {
            int64_t k = 0;
            while (k < nvb && vb[k].step != va[i].step) k++;
            if (k == nvb) {
                fprintf(stderr, "%s: no val row of step %lld\n", what, (long long)va[i].step);
                bad++;
            } else {
                bad += cu_val_diff(&va[i], 1, &vb[k], 1, what) != 0;
            }
        }
    } else {
        bad += cu_val_diff(va, nva, vb, nvb, what) != 0;
    }
    free(va);
    free(vb);
    cu_state_free(&a);
    cu_state_free(&b);
    free(ta);
    free(tb);
    printf("%s: checkpoint of step %d, train and val tables bit-identical: %s\n", what, nsteps, bad ? "NO" : "yes");
    return bad;
}

/* "data parallel: ... this is rank R (local L, pid P, ..." */
static inline long du_pid_of_rank(const char *log, int rank) {
    char key[64];
    snprintf(key, sizeof key, "this is rank %d (local ", rank);
    const char *p = log ? strstr(log, key) : NULL;
    if (!p) return -1;
    p = strstr(p, "pid ");
    return p ? strtol(p + 4, NULL, 10) : -1;
}

#endif
