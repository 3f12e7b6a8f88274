/* metrics: stand-alone evaluation rows (eval) and format 1 files.
 *  - met_open_eval + met_eval_row + met_close: a val row with standalone 1 beside the trainer's row at the same
 *    step; it supersedes no row (train rows after its step stay) and a later resume from an older step keeps it;
 *  - met_open_eval does not wait for a held lock (ERR_IO "another orpo-hpc process"); met_open does wait a
 *    little for a lock held only briefly (checked through a child that holds it for 0.3 s);
 *  - met_rows_at counts the training val rows and the samples standing at a step;
 *  - a metrics.h5 of format_version 1 (no standalone column) is read (standalone 0) and folded by met_open. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "io/err.h"
#include "io/h5x.h"
#include "train/metrics.h"
#include "test.h"

static met_train trow(int64_t step) {
    met_train r;
    memset(&r, 0, sizeof r);
    r.step = step;
    r.loss = 1.0 / (double)step;
    return r;
}

static met_val vrow(int64_t step, double loss) {
    met_val v;
    memset(&v, 0, sizeof v);
    v.step = step;
    v.loss = loss;
    return v;
}

/* rewrite DIR/metrics.h5 as format 1: /val without the standalone column */
static int make_v1(const char *path) {
    met_val *v = NULL;
    int64_t n = 0;
    if (met_read_val(path, &v, &n)) return 1;
    struct v1 {
        int64_t step;
        double loss, nll_loss, accuracy, chosen_logps, rejected_logps;
        int64_t segment;
    } *rows = calloc((size_t)n + 1, sizeof *rows);
    for (int64_t i = 0; i < n; i++)
        rows[i] = (struct v1){v[i].step, v[i].loss, v[i].nll_loss, v[i].accuracy, v[i].chosen_logps,
                              v[i].rejected_logps, v[i].segment};
    free(v);
    hid_t f;
    if (h5x_open(path, 1, &f)) return 1;
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(struct v1));
    H5Tinsert(t, "step", offsetof(struct v1, step), H5T_NATIVE_INT64);
    H5Tinsert(t, "loss", offsetof(struct v1, loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "nll_loss", offsetof(struct v1, nll_loss), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "accuracy", offsetof(struct v1, accuracy), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "chosen_logps", offsetof(struct v1, chosen_logps), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "rejected_logps", offsetof(struct v1, rejected_logps), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "segment", offsetof(struct v1, segment), H5T_NATIVE_INT64);
    H5Ldelete(f, "/val", H5P_DEFAULT);
    h5x_wopts o;
    memset(&o, 0, sizeof o);
    o.unlimited = 1;
    o.chunk[0] = 16;
    int rc = h5x_write_raw(f, "/val", t, t, 1, &n, rows, &o);
    if (!rc) rc = h5x_attr_set_i64(f, "/", "format_version", 1);
    H5Tclose(t);
    h5x_close(&f);
    free(rows);
    return rc;
}

int main(void) {
    const char *dir = test_tmpdir();
    char mpath[1200];
    snprintf(mpath, sizeof mpath, "%s/metrics.h5", dir);
    met_log *m = NULL;

    /* a trainer: steps 1..6, val at 3 and 6 */
    CHECK_EQ_INT(met_open(dir, 0, &m), 0);
    for (int64_t s = 1; s <= 6; s++) {
        met_train r = trow(s);
        CHECK_EQ_INT(met_train_row(m, &r), 0);
        if (s % 3 == 0) {
            met_val v = vrow(s, 10.0 + (double)s);
            CHECK_EQ_INT(met_val_row(m, &v), 0);
        }
    }
    int64_t nv = -1, ns = -1;
    met_rows_at(m, 3, &nv, &ns);
    CHECK(nv == 1 && ns == 0);
    met_rows_at(m, 4, &nv, &ns);
    CHECK(nv == 0 && ns == 0);
    CHECK_EQ_INT(met_checkpoint(m, 3), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);

    /* eval of checkpoint 3: a standalone row at step 3; nothing superseded */
    CHECK_EQ_INT(met_open_eval(dir, &m), 0);
    met_val e = vrow(3, 99.0);
    CHECK_EQ_INT(met_eval_row(m, &e), 0);
    CHECK_EQ_INT(met_close(m, "eval"), 0);
    met_train *tr = NULL;
    met_val *va = NULL;
    met_segment *sg = NULL;
    int64_t nt = 0, nva = 0, nsg = 0;
    CHECK_EQ_INT(met_read_train(mpath, &tr, &nt), 0);
    CHECK_EQ_INT(met_read_val(mpath, &va, &nva), 0);
    CHECK_EQ_INT(met_read_segments(mpath, &sg, &nsg), 0);
    CHECK_EQ_INT((int)nt, 6);
    CHECK_EQ_INT((int)nva, 3);
    if (nva == 3) {
        CHECK(va[0].step == 3 && va[0].standalone == 0 && va[0].loss == 13.0);
        CHECK(va[1].step == 3 && va[1].standalone == 1 && va[1].loss == 99.0);
        CHECK(va[2].step == 6 && va[2].standalone == 0);
    }
    CHECK_EQ_INT((int)nsg, 2);
    if (nsg == 2) {
        CHECK_EQ_STR(sg[1].reason, "eval");
        CHECK(sg[1].start_step == 6);
    }
    free(tr), free(va), free(sg);

    /* a resume from step 3 supersedes the trainer's rows after 3, not the evaluation */
    CHECK_EQ_INT(met_open(dir, 3, &m), 0);
    met_train r4 = trow(4);
    CHECK_EQ_INT(met_train_row(m, &r4), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);
    CHECK_EQ_INT(met_read_train(mpath, &tr, &nt), 0);
    CHECK_EQ_INT(met_read_val(mpath, &va, &nva), 0);
    CHECK_EQ_INT((int)nt, 4);
    CHECK_EQ_INT((int)nva, 2);
    if (nva == 2) CHECK(va[0].standalone == 0 && va[1].standalone == 1 && va[1].step == 3);
    free(tr), free(va);

    /* the lock: eval does not wait; a trainer waits for a brief holder */
    char lock[1300];
    snprintf(lock, sizeof lock, "%s/metrics/lock", dir);
    int fd = open(lock, O_RDWR);
    CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0);
    CHECK_EQ_INT(met_open_eval(dir, &m), ERR_IO);
    CHECK_CONTAINS(err_msg(), "another orpo-hpc process");
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        int cfd = open(lock, O_RDWR);
        flock(cfd, LOCK_EX);
        struct timespec ts = {0, 300 * 1000 * 1000};
        nanosleep(&ts, NULL);
        _exit(0);
    }
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL); /* the child holds the lock by now, most likely; either way met_open must succeed */
    CHECK_EQ_INT(met_open(dir, 4, &m), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);
    int st = 0;
    waitpid(pid, &st, 0);

    /* format 1: read with standalone 0, folded by met_open into a format 2 file */
    char dir2[1200], mpath2[1300];
    snprintf(dir2, sizeof dir2, "%s/v1", dir);
    snprintf(mpath2, sizeof mpath2, "%s/metrics.h5", dir2);
    CHECK_EQ_INT(met_open(dir2, 0, &m), 0);
    for (int64_t s = 1; s <= 3; s++) {
        met_train r = trow(s);
        CHECK_EQ_INT(met_train_row(m, &r), 0);
    }
    met_val v3 = vrow(3, 7.0);
    CHECK_EQ_INT(met_val_row(m, &v3), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);
    CHECK_EQ_INT(make_v1(mpath2), 0);
    CHECK_EQ_INT(met_read_val(mpath2, &va, &nva), 0);
    CHECK_EQ_INT((int)nva, 1);
    if (nva == 1) CHECK(va[0].standalone == 0 && va[0].loss == 7.0);
    free(va);
    CHECK_EQ_INT(met_open(dir2, 3, &m), 0);
    CHECK_EQ_INT(met_close(m, "done"), 0);
    CHECK_EQ_INT(met_read_val(mpath2, &va, &nva), 0);
    CHECK_EQ_INT((int)nva, 1);
    free(va);
    hid_t f;
    int64_t ver = 0;
    CHECK_EQ_INT(h5x_open(mpath2, 0, &f), 0);
    CHECK_EQ_INT(h5x_attr_get_i64(f, "/", "format_version", &ver), 0);
    h5x_close(&f);
    CHECK(ver == MET_FORMAT_VERSION);
    TEST_MAIN_END();
}
