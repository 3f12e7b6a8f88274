/* Unit tests of metrics (crash-proof metrics.h5): tables and values round trip, the supersede rule across
 * resumed segments, a writer that dies without met_close (its journal is folded in, rows after the resume
 * point superseded), metrics.h5 readable at every moment, the lock against a second writer, a damaged
 * metrics.h5 moved aside, refused out-of-order rows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/err.h"
#include "io/fsutil.h"
#include "io/h5x.h"
#include "train/metrics.h"
#include "test.h"

/* the values an (uninterrupted) run logs at a step; `gen` changes them to tell segments apart */
static met_train row_at(int64_t step, int gen) {
    met_train r;
    memset(&r, 0, sizeof r);
    r.step = step;
    r.epoch = (double)step / 7.0;
    r.samples = step * 4;
    r.tokens = step * 4000 + gen;
    r.loss = 1.0 / (double)(step + 1) + gen;
    r.nll_loss = r.loss * 0.5;
    r.log_odds_ratio = -0.25 * (double)step;
    r.log_odds_chosen = 0.125;
    r.chosen_logps = -1.5;
    r.rejected_logps = -2.5;
    r.reward_accuracy = 0.75;
    r.reward_margin = 0.1;
    r.lr = 1e-4 * (double)step;
    r.grad_norm = 3.25;
    r.step_time = 0.5;
    r.tokens_per_s = 8000;
    r.mem_peak = 123456789;
    return r;
}

static int row_equal(const met_train *a, const met_train *b) {
    met_train x = *a, y = *b;
    x.segment = y.segment = 0;
    return !memcmp(&x, &y, sizeof x);
}

static char g_dir[1024], g_mpath[1100];

static void paths(const char *name) {
    snprintf(g_dir, sizeof g_dir, "%s/%s", test_tmpdir(), name);
    snprintf(g_mpath, sizeof g_mpath, "%s/metrics.h5", g_dir);
    fs_mkdirs(g_dir);
}

static int journals(void) {
    char p[1200];
    int n = 0;
    for (int i = 1; i < 20; i++) {
        snprintf(p, sizeof p, "%s/metrics/seg-%06d.h5", g_dir, i);
        n += fs_exists(p);
    }
    return n;
}

static void test_basic(void) {
    paths("basic");
    met_log *m = NULL;
    CHECK_EQ_INT(met_open(g_dir, 0, &m), ERR_OK);
    CHECK_EQ_INT(met_segment_id(m), 1);
    CHECK(fs_exists(g_mpath)); /* complete from the start */
    met_val v0 = {0, 2.0, 1.0, 0.5, -1.0, -2.0, 0, 0};
    CHECK_EQ_INT(met_val_row(m, &v0), ERR_OK);
    for (int64_t s = 1; s <= 10; s++) {
        met_train r = row_at(s, 0);
        CHECK_EQ_INT(met_train_row(m, &r), ERR_OK);
        if (s == 5) {
            CHECK_EQ_INT(met_checkpoint(m, 5), ERR_OK);
            met_val v = {5, 1.5, 0.75, 0.625, -1.25, -2.25, 0, 0};
            CHECK_EQ_INT(met_val_row(m, &v), ERR_OK);
            CHECK_EQ_INT(met_sample(m, 5, "What is shown?", "A cat.", "A dog.", "A cat on a mat."), ERR_OK);
            CHECK_EQ_INT(met_sample(m, 5, "Count them.", "Two", "Three", "two \xc3\xa9"), ERR_OK);
        }
    }
    CHECK_EQ_INT(met_train_rows(m), 10);
    /* out of order rows are refused */
    met_train bad = row_at(10, 0);
    CHECK_EQ_INT(met_train_row(m, &bad), ERR_INTERNAL);
    CHECK_CONTAINS(err_msg(), "expected a step > 10");
    met_val vbad = {4, 0, 0, 0, 0, 0, 0, 0};
    CHECK_EQ_INT(met_val_row(m, &vbad), ERR_INTERNAL);
    CHECK_EQ_INT(met_sample(m, 4, "", "", "", ""), ERR_INTERNAL);
    /* a second writer is refused while this one holds the directory */
    met_log *m2 = NULL;
    CHECK_EQ_INT(met_open(g_dir, 0, &m2), ERR_IO);
    CHECK_CONTAINS(err_msg(), "another orpo-hpc process is writing metrics");
    CHECK(m2 == NULL);
    /* metrics.h5 was rebuilt at the checkpoint: rows 1..5 */
    met_train *rows = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 5);
    free(rows);
    CHECK_EQ_INT(journals(), 1);
    CHECK_EQ_INT(met_close(m, "done"), ERR_OK);
    CHECK_EQ_INT(journals(), 0);

    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 10);
    for (int64_t i = 0; i < n && i < 10; i++) {
        met_train want = row_at(i + 1, 0);
        CHECK(row_equal(&rows[i], &want));
        CHECK_EQ_INT(rows[i].segment, 1);
    }
    free(rows);
    met_val *vals = NULL;
    CHECK_EQ_INT(met_read_val(g_mpath, &vals, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK(vals[0].step == 0 && vals[1].step == 5 && vals[1].accuracy == 0.625 && vals[1].rejected_logps == -2.25);
    free(vals);
    met_sample_row *sm = NULL;
    CHECK_EQ_INT(met_read_samples(g_mpath, &sm, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_INT(sm[0].index, 0);
        CHECK_EQ_INT(sm[1].index, 1);
        CHECK_EQ_STR(sm[0].prompt, "What is shown?");
        CHECK_EQ_STR(sm[0].answer, "A cat on a mat.");
        CHECK_EQ_STR(sm[1].answer, "two \xc3\xa9");
        CHECK_EQ_STR(sm[1].rejected, "Three");
    }
    met_free_samples(sm, n);
    met_segment *sg = NULL;
    CHECK_EQ_INT(met_read_segments(g_mpath, &sg, &n), ERR_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_INT(sg[0].segment, 1);
        CHECK_EQ_INT(sg[0].start_step, 0);
        CHECK_EQ_INT(sg[0].end_step, 10);
        CHECK_EQ_INT(sg[0].checkpoint_step, 5);
        CHECK_EQ_STR(sg[0].reason, "done");
        CHECK(sg[0].end_time >= sg[0].start_time && sg[0].start_time > 1.6e9);
    }
    free(sg);
    /* the file itself: format stamp, packed compound rows */
    hid_t f;
    CHECK_EQ_INT(h5x_open(g_mpath, 0, &f), ERR_OK);
    CHECK_EQ_INT(h5x_check_format(f, "orpo-hpc/metrics", MET_FORMAT_VERSION, NULL), ERR_OK);
    h5x_dsinfo in;
    CHECK_EQ_INT(h5x_info(f, "/train", &in), ERR_OK);
    CHECK(in.ndim == 1 && in.dims[0] == 10 && in.maxdims[0] == -1 && in.type_size == 18 * 8);
    h5x_close(&f);
}

/* segment 2 resumes from step 5 of segment 1 (which had logged up to 10): rows 6..10 of segment 1 are
   superseded by segment 2's; a val row at the resume step replaces the older one */
static void test_supersede(void) {
    met_log *m = NULL;
    CHECK_EQ_INT(met_open(g_dir, 5, &m), ERR_OK);
    CHECK_EQ_INT(met_segment_id(m), 2);
    CHECK_EQ_INT(met_train_rows(m), 5);
    met_train early = row_at(5, 1);
    CHECK_EQ_INT(met_train_row(m, &early), ERR_INTERNAL); /* not after the resume point */
    met_val v = {5, 9.0, 9.0, 0.9, -9.0, -9.0, 0, 0};
    CHECK_EQ_INT(met_val_row(m, &v), ERR_OK);
    for (int64_t s = 6; s <= 12; s++) {
        met_train r = row_at(s, 1);
        CHECK_EQ_INT(met_train_row(m, &r), ERR_OK);
    }
    CHECK_EQ_INT(met_close(m, "interrupted"), ERR_OK);
    met_train *rows = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 12);
    for (int64_t i = 0; i < n && i < 12; i++) {
        met_train want = row_at(i + 1, i + 1 <= 5 ? 0 : 1);
        CHECK_EQ_INT(rows[i].step, i + 1);
        CHECK(row_equal(&rows[i], &want));
        CHECK_EQ_INT(rows[i].segment, i + 1 <= 5 ? 1 : 2);
    }
    free(rows);
    met_val *vals = NULL;
    CHECK_EQ_INT(met_read_val(g_mpath, &vals, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) CHECK(vals[0].step == 0 && vals[0].segment == 1 && vals[1].step == 5 && vals[1].loss == 9.0);
    free(vals);
    met_sample_row *sm = NULL;
    CHECK_EQ_INT(met_read_samples(g_mpath, &sm, &n), ERR_OK);
    CHECK_EQ_INT(n, 2); /* segment 1's samples at step 5 stay: segment 2 wrote none there */
    met_free_samples(sm, n);
    met_segment *sg = NULL;
    CHECK_EQ_INT(met_read_segments(g_mpath, &sg, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(sg[1].reason, "interrupted");
        CHECK_EQ_INT(sg[1].start_step, 5);
        CHECK_EQ_INT(sg[1].end_step, 12);
        CHECK_EQ_INT(sg[1].checkpoint_step, -1);
    }
    free(sg);
    /* a fresh start (resume 0) supersedes every older row but keeps the history of segments */
    CHECK_EQ_INT(met_open(g_dir, 0, &m), ERR_OK);
    met_train r1 = row_at(1, 7);
    CHECK_EQ_INT(met_train_row(m, &r1), ERR_OK);
    CHECK_EQ_INT(met_close(m, "done"), ERR_OK);
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 1);
    if (n == 1) CHECK_EQ_INT(rows[0].segment, 3);
    free(rows);
    CHECK_EQ_INT(met_read_val(g_mpath, &vals, &n), ERR_OK);
    CHECK_EQ_INT(n, 1); /* the val row at step 0 of segment 1 survives a resume at 0 */
    free(vals);
    CHECK_EQ_INT(met_read_segments(g_mpath, &sg, &n), ERR_OK);
    CHECK_EQ_INT(n, 3);
    free(sg);
}

/* a writer dies (no met_close) after a checkpoint at 4 and rows up to 9, with the refresh off: metrics.h5
   holds 1..4; its journal 5..9. The next segment resumes from 7 (a later checkpoint): 1..7 survive. */
static void test_crash_fold(void) {
    paths("fold");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        met_log *m = NULL;
        if (met_open(g_dir, 0, &m)) _exit(10);
        met_set_refresh(m, 0);
        for (int64_t s = 1; s <= 9; s++) {
            met_train r = row_at(s, 0);
            if (met_train_row(m, &r)) _exit(11);
            if (s == 4 && met_checkpoint(m, 4)) _exit(12);
        }
        if (met_sample(m, 9, "p", "c", "r", "a")) _exit(13);
        _exit(0); /* as if killed: no met_close */
    }
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    met_train *rows = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 4);
    free(rows);
    char jp[1200];
    snprintf(jp, sizeof jp, "%s/metrics/seg-000001.h5", g_dir);
    CHECK_EQ_INT(met_read_train(jp, &rows, &n), ERR_OK); /* the journal is an ordinary metrics file too */
    CHECK_EQ_INT(n, 5);
    free(rows);

    met_log *m = NULL;
    CHECK_EQ_INT(met_open(g_dir, 7, &m), ERR_OK);
    CHECK_EQ_INT(met_train_rows(m), 7);
    CHECK(!fs_exists(jp));
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK); /* folded at open already */
    CHECK_EQ_INT(n, 7);
    free(rows);
    met_train r8 = row_at(8, 2);
    CHECK_EQ_INT(met_train_row(m, &r8), ERR_OK);
    CHECK_EQ_INT(met_close(m, "done"), ERR_OK);
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 8);
    for (int64_t i = 0; i < n; i++) {
        met_train want = row_at(i + 1, i + 1 == 8 ? 2 : 0);
        CHECK(row_equal(&rows[i], &want));
    }
    free(rows);
    met_sample_row *sm = NULL;
    CHECK_EQ_INT(met_read_samples(g_mpath, &sm, &n), ERR_OK);
    CHECK_EQ_INT(n, 0); /* logged at step 9 > 7: superseded */
    met_free_samples(sm, n);
    met_segment *sg = NULL;
    CHECK_EQ_INT(met_read_segments(g_mpath, &sg, &n), ERR_OK);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(sg[0].reason, "crashed");
        CHECK_EQ_INT(sg[0].end_step, 9);
        CHECK_EQ_INT(sg[0].checkpoint_step, 4);
        CHECK(isnan(sg[0].end_time));
        CHECK_EQ_STR(sg[1].reason, "done");
    }
    free(sg);
}

/* refresh 0 s: metrics.h5 is rebuilt at every row, a reader sees each row at once */
static void test_refresh_and_damage(void) {
    paths("refresh");
    met_log *m = NULL;
    CHECK_EQ_INT(met_open(g_dir, 0, &m), ERR_OK);
    met_set_refresh(m, 1e-9);
    for (int64_t s = 1; s <= 3; s++) {
        met_train r = row_at(s, 0);
        CHECK_EQ_INT(met_train_row(m, &r), ERR_OK);
        met_train *rows = NULL;
        int64_t n = 0;
        CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
        CHECK_EQ_INT(n, s);
        free(rows);
    }
    CHECK_EQ_INT(met_close(m, NULL), ERR_OK);
    /* a damaged metrics.h5 is moved aside with a warning; the job goes on */
    FILE *f = fopen(g_mpath, "wb");
    fputs("garbage", f);
    fclose(f);
    CHECK_EQ_INT(met_open(g_dir, 0, &m), ERR_OK);
    met_train r = row_at(1, 0);
    CHECK_EQ_INT(met_train_row(m, &r), ERR_OK);
    CHECK_EQ_INT(met_close(m, "done"), ERR_OK);
    char aside[1200];
    snprintf(aside, sizeof aside, "%s.corrupt", g_mpath);
    CHECK(fs_exists(aside));
    met_train *rows = NULL;
    int64_t n = 0;
    CHECK_EQ_INT(met_read_train(g_mpath, &rows, &n), ERR_OK);
    CHECK_EQ_INT(n, 1);
    free(rows);
    /* readers refuse what is not a metrics file */
    CHECK_EQ_INT(met_read_train(aside, &rows, &n), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "metrics.h5.corrupt");
    CHECK_EQ_INT(met_open(g_dir, -1, &m), ERR_ARGS);
}

int main(void) {
    test_basic();
    test_supersede();
    test_crash_fold();
    test_refresh_and_damage();
    TEST_MAIN_END();
}
