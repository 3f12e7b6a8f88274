/* Damaged checkpoints are skipped with a warning and the previous one is used (issue 6, docs/checkpoints.md).
 *
 * The demo job (tests/crash/job.yaml.in, 30 steps, a checkpoint every 3) runs once uninterrupted, keeping every
 * checkpoint. For each kind of damage a copy of that output directory gets its newest checkpoint(s) damaged, and
 * `orpo-hpc resume` must: warn "checkpoint <file> skipped: <reason>" naming each damaged file, move it to
 * <file>.corrupt, say "resuming from <previous file> (step <previous step>", exit 0, and end with a final checkpoint
 * and a metrics train table (steps 1..30 once each) bit-identical to the uninterrupted run's.
 * Damage: truncated to half, to 4 KiB, emptied, a bit flipped inside a tensor's data (CRC-32), a bit flipped in
 * the superblock, garbage instead of HDF5, the two newest damaged (back two checkpoints), every checkpoint damaged
 * (a fresh start from step 0). */
#include "test.h"
#include "crash_util.h"

enum { NSTEPS = 30, EVERY = 3 };

static cu_state g_ref;
static met_train *g_train;
static int64_t g_ntrain;

enum { D_HALF, D_4K, D_EMPTY, D_FLIP_DATA, D_FLIP_SUPER, D_GARBAGE };
static const char *dname[] = {"truncated to half", "truncated to 4 KiB", "empty", "bit flip in tensor data",
                              "bit flip in the superblock", "not HDF5"};

static int file_size(const char *p, int64_t *n) {
    struct stat sb;
    if (stat(p, &sb)) return -1;
    *n = (int64_t)sb.st_size;
    return 0;
}

static int flip_bit(const char *p, int64_t off, int bit) {
    int fd = open(p, O_RDWR);
    if (fd < 0) return -1;
    unsigned char b;
    int ok = pread(fd, &b, 1, off) == 1;
    b ^= (unsigned char)(1u << bit);
    ok = ok && pwrite(fd, &b, 1, off) == 1;
    close(fd);
    return ok ? 0 : -1;
}

/* file offset of the data of the first /adam_v tensor */
static int64_t tensor_offset(const char *p) {
    hid_t f = -1;
    if (h5x_open(p, 0, &f)) return -1;
    char name[CKPT_MAX_NAME + 16] = "/adam_v/";
    hid_t g = H5Gopen2(f, "/adam_v", H5P_DEFAULT);
    int64_t off = -1;
    if (g >= 0 && H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, 0, name + 8, CKPT_MAX_NAME, H5P_DEFAULT) > 0) {
        hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
        if (d >= 0) {
            haddr_t a = H5Dget_offset(d);
            if (a != HADDR_UNDEF) off = (int64_t)a;
            H5Dclose(d);
        }
    }
    if (g >= 0) H5Gclose(g);
    h5x_close(&f);
    return off;
}

static int damage(const char *p, int kind) {
    int64_t n = 0;
    if (file_size(p, &n)) return -1;
    switch (kind) {
    case D_HALF: return truncate(p, n / 2);
    case D_4K: return truncate(p, 4096);
    case D_EMPTY: return truncate(p, 0);
    case D_FLIP_DATA: {
        int64_t off = tensor_offset(p);
        return off < 0 ? -1 : flip_bit(p, off + 10, 3);
    }
    case D_FLIP_SUPER: return flip_bit(p, 20, 0); /* inside the v3 superblock (checksummed) */
    case D_GARBAGE: {
        FILE *f = fopen(p, "wb");
        if (!f) return -1;
        for (int i = 0; i < 5000; i++) fputc((i * 131 + 7) & 0xff, f);
        return fclose(f);
    }
    }
    return -1;
}

/* damage the checkpoints of `steps` (kinds[i]) in a copy of ref, resume, expect a resume from `from` */
static void run_case(const char *dir, const char *refout, const char *name, int n, const int64_t *steps,
                     const int *kinds, int64_t from) {
    char out[1200], p[1300];
    snprintf(out, sizeof out, "%s/%s", dir, name);
    char *cp[] = {"/bin/cp", "-a", (char *)refout, out, NULL};
    CHECK_EQ_INT(cu_run_argv(cp, 60, NULL), 0);
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)steps[i]);
        if (damage(p, kinds[i])) fprintf(stderr, "%s: cannot damage %s\n", name, p);
        CHECK_EQ_INT(ckpt_verify(p, &(int64_t){0}) != 0, 1); /* the damage is real */
    }
    char *log = NULL;
    double t0 = cu_now();
    int rc = cu_job_run(&log, dir, "resume", out, NULL);
    printf("%s: resume exit %d in %.2f s\n", name, rc, cu_now() - t0);
    CHECK_EQ_INT(rc, 0);
    for (int i = 0; i < n; i++) {
        char want[1400];
        snprintf(p, sizeof p, "%s/checkpoints/step-%08lld.h5", out, (long long)steps[i]);
        snprintf(want, sizeof want, "warning: checkpoint %s skipped: ", p);
        CHECK_CONTAINS(log, want);
        snprintf(want, sizeof want, "%s.corrupt", p);
        CHECK_EQ_INT(access(want, F_OK), 0);
    }
    if (from > 0) {
        char want[1400];
        snprintf(want, sizeof want, "resuming from %s/checkpoints/step-%08lld.h5 (step %lld,", out, (long long)from,
                 (long long)from);
        CHECK_CONTAINS(log, want);
    } else {
        CHECK(strstr(log, "resuming from") == NULL);
        CHECK_CONTAINS(log, "resuming crash at step 0 of 30");
    }
    for (const char *l = log; l && *l;) { /* show the warnings */
        const char *e = strchr(l, '\n');
        int len = e ? (int)(e - l) : (int)strlen(l);
        if (!strncmp(l, "orpo-hpc: warning:", 18)) printf("  %.*s\n", len, l);
        l = e ? e + 1 : NULL;
    }
    if (t_fail) fprintf(stderr, "%s log:\n%s\n", name, log);
    free(log);
    /* the end: bit-identical to the uninterrupted run */
    CHECK_EQ_INT(cu_compare_run(&g_ref, g_train, g_ntrain, out, NSTEPS, name), 0);
}

int main(void) {
    const char *dir = test_tmpdir();
    if (cu_setup(dir)) {
        CHECK(0);
        TEST_MAIN_END();
    }
    setenv("ORPO_LOG", "info", 1);
    char ref[1200], *log = NULL;
    snprintf(ref, sizeof ref, "%s/ref", dir);
    int rc = cu_job_run(&log, dir, "train", ref, "--set", "checkpoint.keep_last=100", NULL);
    if (rc) fprintf(stderr, "reference run failed (%d):\n%s\n", rc, log);
    free(log);
    CHECK_EQ_INT(rc, 0);
    int64_t steps[64];
    CHECK_EQ_INT(cu_ckpt_steps(ref, steps, 64), NSTEPS / EVERY);
    CHECK_EQ_INT(cu_load_run(ref, NSTEPS, &g_ref, &g_train, &g_ntrain), 0);
    CHECK_EQ_INT(g_ntrain, NSTEPS);
    if (t_fail) TEST_MAIN_END();

    const int64_t last[1] = {NSTEPS};
    for (int k = 0; k <= D_GARBAGE; k++) {
        char name[64];
        snprintf(name, sizeof name, "case-%d", k);
        printf("%s: newest checkpoint %s\n", name, dname[k]);
        run_case(dir, ref, name, 1, last, &k, NSTEPS - EVERY);
    }
    /* the two newest: back to 24 */
    const int64_t two[2] = {NSTEPS, NSTEPS - EVERY};
    const int k2[2] = {D_FLIP_DATA, D_HALF};
    printf("two: the two newest damaged\n");
    run_case(dir, ref, "two", 2, two, k2, NSTEPS - 2 * EVERY);
    /* every one: a fresh start */
    int64_t all[NSTEPS / EVERY];
    int kall[NSTEPS / EVERY];
    for (int i = 0; i < NSTEPS / EVERY; i++) all[i] = (i + 1) * EVERY, kall[i] = i % (D_GARBAGE + 1);
    printf("all: every checkpoint damaged\n");
    run_case(dir, ref, "all", NSTEPS / EVERY, all, kall, 0);

    cu_state_free(&g_ref);
    free(g_train);
    if (!t_fail) {
        char *rm[] = {"/bin/rm", "-rf", (char *)dir, NULL};
        cu_run_argv(rm, 60, NULL);
    }
    TEST_MAIN_END();
}
