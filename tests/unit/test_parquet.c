/* Unit test: the Parquet reader against pyarrow-written fixtures (tools/oracle/make_parquet_fixtures.py).
 * Every fixture holds the same 12-row RLAIF-V-shaped table in another layout (codec, dictionary,
 * data page v1/v2, row groups, dictionary fallback to PLAIN, format 1.0); every value of every row
 * must equal tests/fixtures/parquet/expected.txt. Also: unsupported features give clear errors. */
#include "io/err.h"
#include "io/parquet.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAXR 64
#define MAXC 32

enum { K_BYTES, K_INT, K_DOUBLE, K_BOOL };

typedef struct expect_val {
    int null;
    uint64_t len, hash; /* bytes */
    long long i;        /* int, bool */
    uint64_t bits;      /* double */
} expect_val;

static int nrows, ncols;
static char col_path[MAXC][128];
static int col_kind[MAXC];
static expect_val ev[MAXR][MAXC];

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static int load_expected(void) {
    FILE *fp = fopen(test_fixture("parquet/expected.txt"), "r");
    if (!fp) return -1;
    char line[512];
    while (fgets(line, sizeof line, fp)) {
        int r, c;
        char a[128], b[128];
        if (sscanf(line, "rows %d", &nrows) == 1) continue;
        if (sscanf(line, "col %d %63s %127s", &c, a, b) == 3) {
            if (c < 0 || c >= MAXC) return -1;
            snprintf(col_path[c], sizeof col_path[c], "%s", a);
            col_kind[c] = !strcmp(b, "bytes") ? K_BYTES : !strcmp(b, "int") ? K_INT : !strcmp(b, "double") ? K_DOUBLE
                                                                                                          : K_BOOL;
            if (c + 1 > ncols) ncols = c + 1;
            continue;
        }
        int k = sscanf(line, "v %d %d %127s %127s", &r, &c, a, b);
        if (k < 3 || r < 0 || r >= MAXR || c < 0 || c >= MAXC) continue;
        expect_val *e = &ev[r][c];
        if (!strcmp(a, "null")) e->null = 1;
        else if (col_kind[c] == K_BYTES && k == 4) { e->len = strtoull(a, NULL, 10); e->hash = strtoull(b, NULL, 16); }
        else if (col_kind[c] == K_DOUBLE) e->bits = strtoull(a, NULL, 16);
        else e->i = strtoll(a, NULL, 10);
    }
    fclose(fp);
    return nrows > 0 && ncols > 0 ? 0 : -1;
}

static int check_file(const char *name) {
    char rel[300];
    snprintf(rel, sizeof rel, "parquet/%s", name);
    pq_file *pq = NULL;
    int fails0 = t_fail;
    int rc = pq_open(test_fixture(rel), &pq);
    CHECK_EQ_INT(rc, ERR_OK);
    if (rc) {
        fprintf(stderr, "%s: %s\n", name, err_msg());
        return 1;
    }
    CHECK_EQ_INT(pq_num_rows(pq), nrows);
    CHECK_EQ_INT(pq_num_columns(pq), ncols);
    CHECK_CONTAINS(pq_created_by(pq), "parquet-cpp-arrow");
    int empty_rg = strstr(name, "empty_row_group") != NULL; /* rows 0..5, a group without rows, rows 6..11 */
    int want_rg = strstr(name, "_rg4") ? 4 : empty_rg ? 3 : 1;
    CHECK_EQ_INT(pq_num_row_groups(pq), want_rg);
    if (empty_rg) CHECK_EQ_INT(pq_row_group_rows(pq, 1), 0);
    int img = pq_find_column(pq, "image.bytes");
    CHECK(img >= 0);
    CHECK_EQ_INT(pq_find_column(pq, "image"), -1); /* a group, not a leaf */
    CHECK_EQ_INT(pq_find_column(pq, "no.such"), -1);
    if (img >= 0) {
        CHECK_EQ_INT(pq_column(pq, img)->max_def, 2);
        CHECK_EQ_INT(pq_column(pq, img)->type, PQ_BYTE_ARRAY);
        CHECK_EQ_INT(pq_column(pq, img)->logical_type, 0);
    }
    int rq = pq_find_column(pq, "req_i64");
    CHECK(rq >= 0);
    if (rq >= 0) CHECK_EQ_INT(pq_column(pq, rq)->max_def, 0); /* REQUIRED: no definition levels */
    int q = pq_find_column(pq, "question");
    if (q >= 0) {
        CHECK_EQ_INT(pq_column(pq, q)->max_def, 1);
        CHECK_EQ_INT(pq_column(pq, q)->converted_type, 0); /* UTF8 */
        if (!strstr(name, "legacy")) CHECK_EQ_INT(pq_column(pq, q)->logical_type, 1); /* STRING */
    }
    for (int c = 0; c < ncols; c++) {
        int col = pq_find_column(pq, col_path[c]);
        CHECK_EQ_INT(col, c); /* leaf order = pyarrow's schema order */
        if (col < 0) continue;
        const pq_column_info *ci = pq_column(pq, col);
        CHECK(ci->readable);
        CHECK_EQ_INT(ci->max_rep, 0);
        int64_t row = 0;
        int dict_pages = 0, plain_pages = 0, dict_data = 0, v1 = 0, v2 = 0;
        for (int g = 0; g < pq_num_row_groups(pq); g++) {
            pq_values v;
            rc = pq_read_column(pq, g, col, &v);
            CHECK_EQ_INT(rc, ERR_OK);
            if (rc) {
                fprintf(stderr, "%s: %s\n", name, err_msg());
                continue;
            }
            CHECK_EQ_INT(v.n, pq_row_group_rows(pq, g));
            if (empty_rg && g == 1) CHECK_EQ_INT(v.n, 0);
            dict_pages += v.pages_dict;
            plain_pages += v.pages_plain;
            dict_data += v.pages_dict_encoded;
            v1 += v.pages_v1;
            v2 += v.pages_v2;
            for (int64_t i = 0; i < v.n && row < MAXR; i++, row++) {
                const expect_val *e = &ev[row][c];
                if (e->null || v.is_null[i]) {
                    if (e->null != v.is_null[i])
                        fprintf(stderr, "%s: row %lld col %s: null %d, expected %d\n", name, (long long)row,
                                col_path[c], v.is_null[i], e->null);
                    CHECK_EQ_INT(v.is_null[i], e->null);
                    continue;
                }
                switch (col_kind[c]) {
                case K_BYTES: {
                    int okv = v.len[i] == e->len && fnv1a64(v.ptr[i], v.len[i]) == e->hash;
                    if (!okv) fprintf(stderr, "%s: row %lld col %s: len %u, expected %llu\n", name, (long long)row,
                                      col_path[c], v.len[i], (unsigned long long)e->len);
                    CHECK(okv);
                    break;
                }
                case K_INT: case K_BOOL:
                    CHECK_EQ_INT(v.i64[i], e->i);
                    break;
                default: {
                    uint64_t bits;
                    memcpy(&bits, &v.f64[i], 8);
                    CHECK(bits == e->bits);
                }
                }
            }
            if (col == img && g == 0) { /* image magic numbers: JPEG, then PNG */
                CHECK(v.len[0] > 3 && v.ptr[0][0] == 0xff && v.ptr[0][1] == 0xd8 && v.ptr[0][2] == 0xff);
                CHECK(v.len[1] > 4 && !memcmp(v.ptr[1], "\x89PNG", 4));
            }
            pq_values_free(&v);
            CHECK(v.ptr == NULL && v.n == 0);
        }
        CHECK_EQ_INT(row, nrows);
        /* the layout really is what the file name says */
        if (strstr(name, "_v2_")) { CHECK_EQ_INT(v1, 0); CHECK(v2 > 0); }
        if (strstr(name, "_v1_")) { CHECK(v1 > 0); CHECK_EQ_INT(v2, 0); }
        if (strstr(name, "_plain_")) { CHECK_EQ_INT(dict_pages, 0); CHECK_EQ_INT(dict_data, 0); }
        if (strstr(name, "_dict_") && col_kind[c] == K_BYTES) { CHECK_EQ_INT(dict_pages, want_rg); CHECK(dict_data > 0); }
        if (strstr(name, "fallback") && !strcmp(col_path[c], "chosen")) {
            /* one chunk: a dictionary page, dictionary-encoded data pages, then PLAIN data pages */
            CHECK_EQ_INT(dict_pages, 1);
            CHECK(dict_data >= 1);
            CHECK(plain_pages >= 1);
        }
    }
    /* argument errors */
    pq_values v;
    CHECK_EQ_INT(pq_read_column(pq, pq_num_row_groups(pq), 0, &v), ERR_ARGS);
    CHECK_EQ_INT(pq_read_column(pq, 0, ncols, &v), ERR_ARGS);
    pq_close(pq);
    return t_fail != fails0;
}

static void check_unsupported(void) {
    pq_file *pq = NULL;
    const char *path = test_fixture("parquet/unsupported_encodings.parquet");
    CHECK_EQ_INT(pq_open(path, &pq), ERR_OK);
    if (!pq) return;
    struct { const char *col, *needle; } cases[] = {
        {"delta_ba", "DELTA_BYTE_ARRAY"},
        {"delta_lba", "DELTA_LENGTH_BYTE_ARRAY"},
        {"bss", "BYTE_STREAM_SPLIT"},
        {"dbp", "DELTA_BINARY_PACKED"},
        {"tags.list.element", "repeated fields"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int c = pq_find_column(pq, cases[i].col);
        CHECK(c >= 0);
        if (c < 0) continue;
        pq_values v;
        CHECK_EQ_INT(pq_read_column(pq, 0, c, &v), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "unsupported_encodings.parquet");
        CHECK_CONTAINS(err_msg(), "row group 0");
        CHECK_CONTAINS(err_msg(), cases[i].col);
        CHECK_CONTAINS(err_msg(), cases[i].needle);
        if (strcmp(cases[i].col, "tags.list.element")) CHECK_CONTAINS(err_msg(), "page 0");
    }
    CHECK(!pq_column(pq, pq_find_column(pq, "tags.list.element"))->readable);
    CHECK_EQ_INT(pq_column(pq, pq_find_column(pq, "tags.list.element"))->max_rep, 1);
    /* the supported column of the same file still reads */
    pq_values v;
    int c = pq_find_column(pq, "ok");
    CHECK_EQ_INT(pq_read_column(pq, 0, c, &v), ERR_OK);
    CHECK_EQ_INT(v.n, 4);
    CHECK(v.is_null && v.is_null[2] == 1 && v.len[3] == 1 && v.ptr[3][0] == 'd');
    pq_values_free(&v);
    pq_close(pq);

    CHECK_EQ_INT(pq_open(test_fixture("parquet/unsupported_gzip.parquet"), &pq), ERR_OK);
    if (pq) {
        CHECK_EQ_INT(pq_read_column(pq, 0, 0, &v), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "unsupported codec GZIP (2)");
        CHECK_CONTAINS(err_msg(), "column 'ok'");
        pq_close(pq);
    }
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) { perror(path); exit(1); }
    if (n) fwrite(p, 1, n, fp);
    fclose(fp);
}

static void check_bad_files(void) {
    char path[600];
    pq_file *pq = NULL;
    CHECK_EQ_INT(pq_open("/nonexistent/x.parquet", &pq), ERR_IO);
    CHECK_CONTAINS(err_msg(), "/nonexistent/x.parquet");
    CHECK(pq == NULL);

    snprintf(path, sizeof path, "%s/notpq.parquet", test_tmpdir());
    write_file(path, "hello, this is not a parquet file at all", 40);
    CHECK_EQ_INT(pq_open(path, &pq), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "expected magic 'PAR1'");
    CHECK_CONTAINS(err_msg(), "notpq.parquet");

    write_file(path, "PAR1", 4);
    CHECK_EQ_INT(pq_open(path, &pq), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "too short");

    /* an encrypted footer: magic PARE */
    FILE *fp = fopen(test_fixture("parquet/snappy_dict_v1_rg1.parquet"), "rb");
    CHECK(fp != NULL);
    if (!fp) return;
    static uint8_t buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    /* truncated (a copy cut short): the start is fine, so the message must not blame byte 0 */
    snprintf(path, sizeof path, "%s/cut.parquet", test_tmpdir());
    write_file(path, buf, n / 2);
    CHECK_EQ_INT(pq_open(path, &pq), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "cut.parquet: truncated or incomplete Parquet file: it starts with the magic 'PAR1'");
    CHECK(strstr(err_msg(), "at byte 0") == NULL);
    char at[64];
    snprintf(at, sizeof at, "(at byte %zu of %zu)", n / 2 - 4, n / 2);
    CHECK_CONTAINS(err_msg(), at);
    memcpy(buf + n - 4, "PARE", 4);
    snprintf(path, sizeof path, "%s/pare.parquet", test_tmpdir());
    write_file(path, buf, n);
    CHECK_EQ_INT(pq_open(path, &pq), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "encrypted");
    memcpy(buf + n - 4, "PAR1", 4);
    /* footer length pointing before the file start */
    buf[n - 5] = 0x7f;
    write_file(path, buf, n);
    CHECK_EQ_INT(pq_open(path, &pq), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "footer length");
}

int main(void) {
    if (load_expected()) {
        fprintf(stderr, "cannot load %s\n", test_fixture("parquet/expected.txt"));
        return 1;
    }
    CHECK_EQ_INT(nrows, 12);
    CHECK_EQ_INT(ncols, 15);
    FILE *fp = fopen(test_fixture("parquet/files.txt"), "r");
    CHECK(fp != NULL);
    int nfiles = 0, bad = 0;
    char name[256];
    while (fp && fscanf(fp, "%255s", name) == 1) {
        nfiles++;
        bad += check_file(name);
    }
    if (fp) fclose(fp);
    CHECK(nfiles >= 19);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(check_file("empty_row_group.parquet"), 0); /* pyarrow: data_page_offset 0 in the empty group */
    check_unsupported();
    check_bad_files();
    TEST_MAIN_END();
}
