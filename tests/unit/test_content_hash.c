/* content_hash: the stream hash does not depend on how the bytes are split; a file's hash depends on what it
 * holds (dataset bytes, shapes, types, names, attributes) and not on how it is stored (order of creation,
 * chunking) nor on the provenance attributes and the content_hash attribute itself; record / read round trip;
 * a file without a recorded hash reads as not found. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include "io/content_hash.h"
#include "io/err.h"
#include "io/h5x.h"

/* a small file: /a float32 [n][3], /g/b int64 [5] with an attribute, root attributes; order/chunked vary */
static int make(const char *path, int reverse, int chunked, float a0, int64_t battr, const char *created_by) {
    hid_t f;
    if (h5x_create(path, &f)) return 1;
    float a[300 * 3];
    for (int i = 0; i < 900; i++) a[i] = (float)i * 0.5f;
    a[0] = a0;
    int64_t b[5] = {1, 2, 3, 4, 5}, da[2] = {300, 3}, db = 5;
    h5x_wopts o;
    memset(&o, 0, sizeof o);
    o.chunk[0] = 64;
    o.chunk[1] = 3;
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        if ((k == 0) != (reverse != 0)) rc = chunked ? h5x_write_opts(f, "a", H5X_F32, 2, da, a, &o) : h5x_write(f, "a", H5X_F32, 2, da, a);
        else rc = h5x_write(f, "g/b", H5X_I64, 1, &db, b);
    }
    if (!rc) rc = h5x_attr_set_i64(f, "g/b", "scale", battr);
    if (!rc) rc = h5x_attr_set_str(f, "/", "created_by", created_by);
    if (!rc) rc = h5x_attr_set_str(f, "/", "format", "test");
    h5x_close(&f);
    return rc;
}

int main(void) {
    /* the stream: any split gives the same hash; a changed byte or length changes it */
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (unsigned char)(i * 7 + 3);
    chash_state s;
    chash_init(&s);
    chash_update(&s, buf, 1000);
    uint64_t whole = chash_final(&s);
    size_t cuts[] = {1, 7, 31, 32, 33, 64, 999};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        chash_init(&s);
        for (size_t off = 0; off < 1000; off += cuts[c]) chash_update(&s, buf + off, off + cuts[c] > 1000 ? 1000 - off : cuts[c]);
        CHECK(chash_final(&s) == whole);
    }
    buf[500] ^= 1;
    chash_init(&s);
    chash_update(&s, buf, 1000);
    CHECK(chash_final(&s) != whole);
    chash_init(&s);
    chash_update(&s, buf, 999);
    CHECK(chash_final(&s) != whole);
    char hex[CHASH_HEX];
    chash_hex(0x0123456789abcdefull, hex);
    CHECK_EQ_STR(hex, "0123456789abcdef");

    const char *dir = test_tmpdir();
    char p[6][1024];
    for (int i = 0; i < 6; i++) snprintf(p[i], sizeof p[i], "%s/f%d.h5", dir, i);
    CHECK_EQ_INT(make(p[0], 0, 0, 1.0f, 7, "orpo-hpc 0.1.0"), 0);
    CHECK_EQ_INT(make(p[1], 1, 1, 1.0f, 7, "orpo-hpc 9.9.9"), 0); /* other order, chunked, other build */
    CHECK_EQ_INT(make(p[2], 0, 0, 2.0f, 7, "orpo-hpc 0.1.0"), 0); /* one value differs */
    CHECK_EQ_INT(make(p[3], 0, 0, 1.0f, 8, "orpo-hpc 0.1.0"), 0); /* an attribute differs */
    uint64_t h[4];
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(chash_file(p[i], &h[i]), 0);
    CHECK(h[0] == h[1]);
    CHECK(h[0] != h[2]);
    CHECK(h[0] != h[3]);
    CHECK(h[2] != h[3]);

    /* record / read; the recorded attribute does not enter the hash */
    uint64_t got = 0, rec = 0;
    int found = 1;
    CHECK_EQ_INT(chash_read(p[0], &got, &found), 0);
    CHECK_EQ_INT(found, 0);
    CHECK_EQ_INT(chash_record(p[0], &rec), 0);
    CHECK(rec == h[0]);
    CHECK_EQ_INT(chash_read(p[0], &got, &found), 0);
    CHECK_EQ_INT(found, 1);
    CHECK(got == h[0]);
    CHECK_EQ_INT(chash_file(p[0], &got), 0);
    CHECK(got == h[0]);

    /* a malformed attribute is an error naming it; a missing file an I/O error */
    hid_t f;
    CHECK_EQ_INT(h5x_open(p[3], 1, &f), 0);
    CHECK_EQ_INT(h5x_attr_set_str(f, "/", CHASH_ATTR, "xyz"), 0);
    h5x_close(&f);
    CHECK_EQ_INT(chash_read(p[3], &got, &found), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "content_hash is 'xyz', expected 16 hex digits");
    snprintf(p[4], sizeof p[4], "%s/missing.h5", dir);
    CHECK(chash_file(p[4], &got) != ERR_OK);
    TEST_MAIN_END();
}
