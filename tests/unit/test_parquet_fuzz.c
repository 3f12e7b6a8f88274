/* Fuzz test: truncated and bit-flipped copies of every Parquet fixture must give an error or
 * valid data, never a crash, a hang, a leak or an out-of-bounds access (run it under ASan+UBSan).
 *
 * Per fixture: truncation at every 1/64 of the file plus every byte of the last 300 (the footer),
 * and NFLIP single-bit flips (a quarter of them random bytes instead) at seeded random offsets,
 * a third of them in the last 2 KiB (the footer), a third in the first 512 bytes (page headers). Every variant is opened and every column of every row group is read. */
#include "io/err.h"
#include "io/parquet.h"
#include "test.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NFLIP 800

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static long n_open_ok, n_open_err, n_read_ok, n_read_err;

static void write_file(const char *path, const uint8_t *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) { perror(path); exit(1); }
    if (n && fwrite(p, 1, n, fp) != n) { perror(path); exit(1); }
    fclose(fp);
}

/* Open and read everything; the outcome may be either, but must be consistent. */
static void exercise(const char *path) {
    pq_file *pq = NULL;
    int rc = pq_open(path, &pq);
    if (rc) {
        n_open_err++;
        CHECK(pq == NULL);
        CHECK(rc == ERR_DATA || rc == ERR_IO);
        CHECK(err_msg()[0] != '\0');
        return;
    }
    n_open_ok++;
    for (int g = 0; g < pq_num_row_groups(pq); g++) {
        for (int c = 0; c < pq_num_columns(pq); c++) {
            pq_values v;
            rc = pq_read_column(pq, g, c, &v);
            if (rc) {
                n_read_err++;
                if (rc != ERR_DATA && rc != ERR_IO) CHECK_EQ_INT(rc, ERR_DATA);
                CHECK_CONTAINS(err_msg(), path);
                CHECK(v.is_null == NULL);
                continue;
            }
            n_read_ok++;
            /* touch every value so ASan sees any bad pointer */
            uint64_t sum = 0;
            for (int64_t i = 0; i < v.n; i++) {
                if (v.is_null[i]) continue;
                if (v.ptr) for (uint32_t k = 0; k < v.len[i]; k++) sum += v.ptr[i][k];
                else if (v.i64) sum += (uint64_t)v.i64[i];
            }
            (void)sum;
            pq_values_free(&v);
        }
    }
    pq_close(pq);
}

int main(void) {
    FILE *fp = fopen(test_fixture("parquet/files.txt"), "r");
    CHECK(fp != NULL);
    if (!fp) TEST_MAIN_END();
    char name[256], rel[300], path[600];
    static uint8_t buf[1 << 20], tmp[1 << 20];
    snprintf(path, sizeof path, "%s/fuzz.parquet", test_tmpdir());
    int nfiles = 0;
    while (fscanf(fp, "%255s", name) == 1) {
        snprintf(rel, sizeof rel, "parquet/%s", name);
        FILE *in = fopen(test_fixture(rel), "rb");
        CHECK(in != NULL);
        if (!in) continue;
        size_t n = fread(buf, 1, sizeof buf, in);
        fclose(in);
        nfiles++;
        /* the untouched file reads completely */
        long before = n_read_err;
        write_file(path, buf, n);
        exercise(path);
        CHECK_EQ_INT(n_read_err, before);

        /* truncations: every 1/64 of the file, and every byte of the last 300 */
        for (int k = 0; k < 64; k++) {
            write_file(path, buf, n * (size_t)k / 64);
            exercise(path);
        }
        for (size_t cut = n > 300 ? n - 300 : 0; cut < n; cut++) {
            write_file(path, buf, cut);
            exercise(path);
        }
        /* single-bit flips: a third in the footer, a third in the first 512 bytes, the rest anywhere */
        for (int k = 0; k < NFLIP; k++) {
            memcpy(tmp, buf, n);
            size_t off;
            if (k % 3 == 0 && n > 2048) off = n - 1 - rnd() % 2048;
            else if (k % 3 == 1 && n > 512) off = rnd() % 512; /* the first page headers */
            else off = rnd() % n;
            if (k % 4 == 3) tmp[off] = (uint8_t)rnd(); /* a random byte */
            else tmp[off] ^= (uint8_t)(1u << (rnd() % 8));
            write_file(path, tmp, n);
            exercise(path);
        }
    }
    fclose(fp);
    unlink(path);
    rmdir(test_tmpdir());
    printf("%d files: open ok %ld / err %ld; column reads ok %ld / err %ld\n", nfiles, n_open_ok, n_open_err,
           n_read_ok, n_read_err);
    CHECK(nfiles >= 19);
    CHECK(n_open_err > 0 && n_read_err > 0 && n_read_ok > 0);
    TEST_MAIN_END();
}
