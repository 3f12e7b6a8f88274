/* Unit test: the Parquet writer (io/pq_write) read back with the Parquet reader (io/parquet).
 * An RLAIF-V-shaped schema (optional strings, an optional struct image{bytes, path}) plus required and
 * optional INT64 columns; nulls at every definition level, empty and binary values with zero bytes, values
 * larger than a page; several row groups and many pages per chunk; UNCOMPRESSED and SNAPPY. Every value of
 * every row must come back equal. Also: misuse is refused with ERR_ARGS and leaves no file behind. */
#include "io/err.h"
#include "io/fsutil.h"
#include "io/parquet.h"
#include "io/pq_write.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NROWS 157

enum { C_DS, C_IMG_BYTES, C_IMG_PATH, C_Q, C_REQ_I64, C_OPT_I64, C_IDX, NCOLS };
static const char *paths[NCOLS] = {"ds_name", "image.bytes", "image.path", "question", "req_i64", "opt_i64", "idx"};

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* the expected value of (row, col): def level, bytes or integer */
typedef struct {
    int def;            /* definition level; max = present */
    uint8_t *p;
    size_t n;
    int64_t i;
} cell;

static cell want[NROWS][NCOLS];
static const int max_def[NCOLS] = {1, 2, 2, 1, 0, 1, 1};

static void make_values(void) {
    uint64_t s = 42;
    for (int r = 0; r < NROWS; r++) {
        int img_null = r % 11 == 3;
        for (int c = 0; c < NCOLS; c++) {
            cell *e = &want[r][c];
            e->def = max_def[c];
            if (c == C_IMG_BYTES || c == C_IMG_PATH) {
                if (img_null) e->def = 0;
                else if (c == C_IMG_PATH && r % 3 == 0) e->def = 1;
                else if (c == C_IMG_BYTES && r % 17 == 5) e->def = 1;
            } else if (c != C_REQ_I64 && r % 7 == 2) {
                e->def = 0;
            }
            if (e->def < max_def[c]) continue;
            if (c == C_REQ_I64 || c == C_OPT_I64) {
                e->i = (int64_t)splitmix(&s);
                if (r == 0) e->i = INT64_MIN;
                if (r == 1) e->i = -1;
                continue;
            }
            size_t n = (size_t)(splitmix(&s) % 40);
            if (c == C_IMG_BYTES) n = r == 10 ? 5000 : (size_t)(splitmix(&s) % 900); /* 5000 > one page */
            if (r % 13 == 4) n = 0;                                                   /* empty value */
            e->p = malloc(n ? n : 1);
            for (size_t k = 0; k < n; k++)
                e->p[k] = c == C_IMG_BYTES ? (uint8_t)splitmix(&s) : (uint8_t)('a' + splitmix(&s) % 26);
            e->n = n;
        }
    }
}

static int write_file(const char *path, int codec, int64_t rg_rows, size_t page_bytes) {
    pqw_opts o;
    pqw_opts_default(&o);
    o.codec = codec;
    o.row_group_rows = rg_rows;
    o.page_bytes = page_bytes;
    pqw *w;
    int rc = pqw_open(path, &o, &w);
    if (rc) return rc;
    if ((rc = pqw_add_column(w, "ds_name", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_group(w, "image", 1)) ||
        (rc = pqw_add_column(w, "image.bytes", PQ_BYTE_ARRAY, 1, PQW_ANNOT_NONE)) ||
        (rc = pqw_add_column(w, "image.path", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "question", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING)) ||
        (rc = pqw_add_column(w, "req_i64", PQ_INT64, 0, PQW_ANNOT_NONE)) ||
        (rc = pqw_add_column(w, "opt_i64", PQ_INT64, 1, PQW_ANNOT_NONE)) ||
        (rc = pqw_add_column(w, "idx", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING))) {
        pqw_abort(w);
        return rc;
    }
    for (int r = 0; r < NROWS && !rc; r++) {
        for (int c = 0; c < NCOLS && !rc; c++) {
            const cell *e = &want[r][c];
            if (e->def < max_def[c]) rc = pqw_set_null(w, c, e->def);
            else if (c == C_REQ_I64 || c == C_OPT_I64) rc = pqw_set_i64(w, c, e->i);
            else rc = pqw_set_bytes(w, c, e->p, e->n);
        }
        if (!rc) rc = pqw_end_row(w);
    }
    if (rc) {
        pqw_abort(w);
        return rc;
    }
    return pqw_close(w);
}

static void check_file(const char *path, int64_t rg_rows, int expect_many_pages) {
    pq_file *pq = NULL;
    int rc = pq_open(path, &pq);
    CHECK_EQ_INT(rc, ERR_OK);
    if (rc) {
        fprintf(stderr, "%s\n", err_msg());
        return;
    }
    CHECK_EQ_INT(pq_num_rows(pq), NROWS);
    CHECK_EQ_INT(pq_num_row_groups(pq), (NROWS + rg_rows - 1) / rg_rows);
    CHECK_EQ_INT(pq_num_columns(pq), NCOLS);
    for (int c = 0; c < NCOLS; c++) {
        const pq_column_info *ci = pq_column(pq, c);
        CHECK_EQ_STR(ci->path, paths[c]);
        CHECK_EQ_INT(ci->max_def, max_def[c]);
        CHECK_EQ_INT(ci->max_rep, 0);
        CHECK_EQ_INT(ci->type, (c == C_REQ_I64 || c == C_OPT_I64) ? PQ_INT64 : PQ_BYTE_ARRAY);
        int is_str = c == C_DS || c == C_IMG_PATH || c == C_Q || c == C_IDX;
        CHECK_EQ_INT(ci->converted_type, is_str ? 0 : -1);
        CHECK_EQ_INT(ci->logical_type, is_str ? 1 : 0);
        CHECK_EQ_INT(pq_find_column(pq, paths[c]), c);
    }
    int64_t row0 = 0;
    int bad = 0, pages = 0;
    for (int g = 0; g < pq_num_row_groups(pq); g++) {
        int64_t n = pq_row_group_rows(pq, g);
        CHECK_EQ_INT(n, row0 + rg_rows <= NROWS ? rg_rows : NROWS - row0);
        for (int c = 0; c < NCOLS; c++) {
            pq_values v;
            rc = pq_read_column(pq, g, c, &v);
            CHECK_EQ_INT(rc, ERR_OK);
            if (rc) {
                fprintf(stderr, "%s\n", err_msg());
                continue;
            }
            CHECK_EQ_INT(v.n, n);
            pages += v.pages_v1;
            CHECK_EQ_INT(v.pages_v2 + v.pages_dict + v.pages_dict_encoded, 0);
            for (int64_t i = 0; i < n && i < v.n; i++) {
                const cell *e = &want[row0 + i][c];
                int null = e->def < max_def[c];
                if (v.is_null[i] != null) { bad++; continue; }
                if (null) continue;
                if (c == C_REQ_I64 || c == C_OPT_I64) {
                    if (v.i64[i] != e->i) bad++;
                } else if (v.len[i] != e->n || (e->n && memcmp(v.ptr[i], e->p, e->n))) {
                    bad++;
                }
            }
            pq_values_free(&v);
        }
        row0 += n;
    }
    CHECK_EQ_INT(row0, NROWS);
    CHECK_EQ_INT(bad, 0);
    if (expect_many_pages) CHECK(pages > 3 * NCOLS * pq_num_row_groups(pq));
    else CHECK_EQ_INT(pages, NCOLS * pq_num_row_groups(pq));
    pq_close(pq);
}

static void test_roundtrip(void) {
    char path[600];
    const int codecs[2] = {PQW_UNCOMPRESSED, PQW_SNAPPY};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/rt_%d_a.parquet", test_tmpdir(), k);
        CHECK_EQ_INT(write_file(path, codecs[k], 1 << 20, 1 << 20), ERR_OK); /* one row group, one page */
        check_file(path, 1 << 20 > NROWS ? NROWS : 1 << 20, 0);
        snprintf(path, sizeof path, "%s/rt_%d_b.parquet", test_tmpdir(), k);
        CHECK_EQ_INT(write_file(path, codecs[k], 40, 300), ERR_OK);          /* 4 row groups, many pages */
        check_file(path, 40, 1);
        snprintf(path, sizeof path, "%s/rt_%d_c.parquet", test_tmpdir(), k);
        CHECK_EQ_INT(write_file(path, codecs[k], 1, 1), ERR_OK);             /* a row group per row */
        check_file(path, 1, 0);
    }
    /* snappy actually compresses the text columns: the file is smaller */
    int64_t a = 0, b = 0;
    snprintf(path, sizeof path, "%s/rt_0_a.parquet", test_tmpdir());
    fs_size(path, &a);
    snprintf(path, sizeof path, "%s/rt_1_a.parquet", test_tmpdir());
    fs_size(path, &b);
    CHECK(b > 0 && b < a);
    /* determinism: the same rows give the same bytes */
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    char p2[600];
    snprintf(path, sizeof path, "%s/rt_1_b.parquet", test_tmpdir());
    snprintf(p2, sizeof p2, "%s/rt_1_b2.parquet", test_tmpdir());
    CHECK_EQ_INT(write_file(p2, PQW_SNAPPY, 40, 300), ERR_OK);
    CHECK_EQ_INT(fs_read_all(path, &x, &nx), ERR_OK);
    CHECK_EQ_INT(fs_read_all(p2, &y, &ny), ERR_OK);
    CHECK(nx == ny && nx > 0 && !memcmp(x, y, nx));
    free(x);
    free(y);
}

static void test_misuse(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/misuse.parquet", test_tmpdir());
    pqw *w;
    /* a value missing from a row */
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "b", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_str(w, 0, "x"), ERR_OK);
    CHECK_EQ_INT(pqw_end_row(w), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "column 'b': no value in this row");
    CHECK_EQ_INT(pqw_close(w), ERR_ARGS);
    CHECK(!fs_exists(path));
    /* wrong type, set twice, null on a required column, unknown column */
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_BYTE_ARRAY, 1, PQW_ANNOT_STRING), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 0, 1), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "not INT64");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_null(w, 0, 0), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "is required");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 0, 1), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 0, 2), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "set twice");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 3, 1), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "no column 3");
    pqw_abort(w);
    /* schema errors: undeclared group, STRING on INT64, leaves of a group apart, schema after a row,
     * a group null in one leaf only */
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "g.a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "was not declared");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_STRING), ERR_ARGS);
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_group(w, "g", 1), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "g.a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "b", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "g.c", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "one after another");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_group(w, "g", 1), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "g.a", PQ_INT64, 1, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "g.b", PQ_INT64, 1, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_max_def(w, 1), 2);
    CHECK_EQ_INT(pqw_set_null(w, 0, 0), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 1, 7), ERR_OK);
    CHECK_EQ_INT(pqw_end_row(w), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "null in some leaves");
    pqw_abort(w);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 0, 1), ERR_OK);
    CHECK_EQ_INT(pqw_end_row(w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "b", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "schema is fixed");
    pqw_abort(w);
    CHECK(!fs_exists(path));
    /* an existing file is untouched by a failed write */
    FILE *fp = fopen(path, "wb");
    fputs("old", fp);
    fclose(fp);
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 0, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_set_i64(w, 0, 1), ERR_OK);
    CHECK_EQ_INT(pqw_close(w), ERR_ARGS); /* row not ended */
    int64_t sz = 0;
    CHECK_EQ_INT(fs_size(path, &sz), ERR_OK);
    CHECK_EQ_INT(sz, 3);
    /* a file with zero rows is valid */
    CHECK_EQ_INT(pqw_open(path, NULL, &w), ERR_OK);
    CHECK_EQ_INT(pqw_add_column(w, "a", PQ_INT64, 1, PQW_ANNOT_NONE), ERR_OK);
    CHECK_EQ_INT(pqw_close(w), ERR_OK);
    pq_file *pq = NULL;
    CHECK_EQ_INT(pq_open(path, &pq), ERR_OK);
    if (pq) {
        CHECK_EQ_INT(pq_num_rows(pq), 0);
        CHECK_EQ_INT(pq_num_row_groups(pq), 0);
        pq_close(pq);
    }
}

int main(void) {
    make_values();
    test_roundtrip();
    test_misuse();
    for (int r = 0; r < NROWS; r++)
        for (int c = 0; c < NCOLS; c++) free(want[r][c].p);
    TEST_MAIN_END();
}
