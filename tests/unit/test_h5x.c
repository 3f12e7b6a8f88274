/* Unit tests of h5x (HDF5 helpers). `test_h5x --sample FILE` only writes the sample file that
 * tests/unit/test_inspect.sh inspects. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/err.h"
#include "io/h5x.h"
#include "test.h"

static char g_path[1024];

static const char *tpath(const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", test_tmpdir(), name);
    return g_path;
}

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static float fbits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t bitsf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

typedef struct row {
    int64_t step;
    float loss;
    double lr;
} row;

static hid_t row_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(row));
    H5Tinsert(t, "step", HOFFSET(row, step), H5T_NATIVE_INT64);
    H5Tinsert(t, "loss", HOFFSET(row, loss), H5T_NATIVE_FLOAT);
    H5Tinsert(t, "lr", HOFFSET(row, lr), H5T_NATIVE_DOUBLE);
    return t;
}

static hid_t row_file_type(void) {
    hid_t t = H5Tcreate(H5T_COMPOUND, 8 + 4 + 8);
    H5Tinsert(t, "step", 0, H5T_STD_I64LE);
    H5Tinsert(t, "loss", 8, H5T_IEEE_F32LE);
    H5Tinsert(t, "lr", 12, H5T_IEEE_F64LE);
    return t;
}

/* the file test_inspect.sh looks at */
static int write_sample(const char *path) {
    hid_t f;
    if (h5x_create(path, &f)) return 1;
    int rc = 0;
    float w[6] = {1.5f, -2.25f, 3.0f, 0.5f, 1e-3f, -7.0f};
    uint16_t wb[6];
    h5x_f32_to_bf16_n(w, wb, 6);
    int64_t d23[2] = {2, 3}, d6[1] = {6}, d0[1] = {0};
    rc |= h5x_set_format(f, "orpo-hpc/sample", 1);
    rc |= h5x_attr_set_str(f, "/", "note", "only shown with --attrs");
    rc |= h5x_write(f, "/layers/0/w_f32", H5X_F32, 2, d23, w);
    rc |= h5x_write(f, "/layers/0/w_bf16", H5X_BF16, 2, d23, wb);
    rc |= h5x_attr_set_i64(f, "/layers/0/w_bf16", "block_size", 64);
    h5x_wopts o = {.shuffle = 1, .deflate = 1};
    rc |= h5x_write_opts(f, "/data/ids", H5X_I32, 1, d6, (int32_t[]){1, 2, 3, 4, 5, 6}, &o);
    rc |= h5x_write(f, "/data/empty", H5X_U8, 1, d0, NULL);
    rc |= h5x_write(f, "/scalar", H5X_I64, 0, NULL, (int64_t[]){42});
    rc |= h5x_write(f, "/a/b/c/d/deep", H5X_U16, 1, d6, (uint16_t[]){1, 2, 3, 4, 5, 6});
    hid_t ft = row_file_type(), mt = row_type();
    h5x_wopts u = {.unlimited = 1, .chunk = {64}};
    rc |= h5x_write_raw(f, "/metrics/train", ft, mt, 1, d0, NULL, &u);
    row rows[2] = {{1, 2.5f, 1e-4}, {2, 2.25f, 2e-4}};
    rc |= h5x_append_raw(f, "/metrics/train", mt, 2, rows);
    H5Tclose(ft);
    H5Tclose(mt);
    rc |= h5x_close(&f);
    if (rc) fprintf(stderr, "sample: %s\n", err_msg());
    return rc ? 1 : 0;
}

static void test_roundtrip_dtypes(void) {
    hid_t f;
    CHECK_EQ_INT(h5x_create(tpath("types.h5"), &f), ERR_OK);
    int64_t dims[3] = {2, 3, 4};
    float f32[24];
    double f64[24];
    uint16_t bf[24], hf[24], u16[24];
    uint8_t u8[24];
    int8_t i8[24];
    int16_t i16[24];
    int32_t i32[24];
    uint32_t u32[24];
    int64_t i64[24];
    uint64_t u64[24];
    for (int i = 0; i < 24; i++) {
        f32[i] = (float)i * 0.37f - 4.0f;
        f64[i] = (double)i * 1e-300;
        bf[i] = h5x_f32_to_bf16(f32[i]);
        hf[i] = h5x_f32_to_f16(f32[i]);
        u16[i] = (uint16_t)(65535 - i * 1000);
        u8[i] = (uint8_t)(250 + i);
        i8[i] = (int8_t)(-100 - i);
        i16[i] = (int16_t)(-30000 + i);
        i32[i] = -2000000000 + i;
        u32[i] = 4000000000u + (uint32_t)i;
        i64[i] = (int64_t)-9000000000000000000LL + i;
        u64[i] = 18000000000000000000ULL + (uint64_t)i;
    }
    struct {
        h5x_dtype dt;
        const char *path;
        const void *data;
    } cases[] = {
        {H5X_F32, "/g1/f32", f32}, {H5X_F64, "/g1/f64", f64}, {H5X_BF16, "/g2/sub/bf16", bf},
        {H5X_F16, "f16", hf},      {H5X_U8, "u8", u8},        {H5X_I8, "i8", i8},
        {H5X_U16, "u16", u16},     {H5X_I16, "i16", i16},     {H5X_I32, "i32", i32},
        {H5X_U32, "u32", u32},     {H5X_I64, "i64", i64},     {H5X_U64, "u64", u64},
    };
    int nc = (int)(sizeof cases / sizeof cases[0]);
    for (int c = 0; c < nc; c++) {
        int rc = h5x_write(f, cases[c].path, cases[c].dt, 3, dims, cases[c].data);
        if (rc) fprintf(stderr, "%s\n", err_msg());
        CHECK_EQ_INT(rc, ERR_OK);
    }
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
    CHECK_EQ_INT(f, -1);

    CHECK_EQ_INT(h5x_open(tpath("types.h5"), 0, &f), ERR_OK);
    for (int c = 0; c < nc; c++) {
        unsigned char buf[24 * 8];
        memset(buf, 0xAB, sizeof buf);
        size_t sz = h5x_dtype_size(cases[c].dt);
        CHECK_EQ_INT(h5x_read(f, cases[c].path, cases[c].dt, 3, dims, buf), ERR_OK);
        CHECK(memcmp(buf, cases[c].data, 24 * sz) == 0);
        h5x_dsinfo in;
        CHECK_EQ_INT(h5x_info(f, cases[c].path, &in), ERR_OK);
        CHECK_EQ_INT(in.dtype, cases[c].dt);
        CHECK_EQ_INT(in.ndim, 3);
        CHECK_EQ_INT(in.dims[2], 4);
        CHECK_EQ_INT(in.chunked, 0);
        CHECK_EQ_INT(in.type_size, sz);
    }
    /* the f16 dataset decodes through HDF5's own conversion to native float */
    {
        float back[24];
        hid_t d = H5Dopen2(f, "f16", H5P_DEFAULT);
        CHECK(d >= 0);
        CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
        H5Dclose(d);
        int same = 1;
        for (int i = 0; i < 24; i++) same &= bitsf(back[i]) == bitsf(h5x_f16_to_f32(hf[i]));
        CHECK(same);
    }
    /* read_alloc returns shape and values */
    int nd = 0;
    int64_t got[H5X_MAX_DIMS];
    void *p = NULL;
    CHECK_EQ_INT(h5x_read_alloc(f, "/g1/f32", H5X_F32, &nd, got, &p), ERR_OK);
    CHECK_EQ_INT(nd, 3);
    CHECK_EQ_INT(got[0] * got[1] * got[2], 24);
    CHECK(p && memcmp(p, f32, sizeof f32) == 0);
    free(p);
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

static void test_format_pinned(void) {
    hid_t f;
    CHECK_EQ_INT(h5x_create(tpath("fmt.h5"), &f), ERR_OK);
    int64_t d[1] = {4};
    CHECK_EQ_INT(h5x_write(f, "x", H5X_F32, 1, d, (float[]){1, 2, 3, 4}), ERR_OK);
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
    CHECK_EQ_INT(h5x_open(tpath("fmt.h5"), 0, &f), ERR_OK);
    hid_t fapl = H5Fget_access_plist(f);
    H5F_libver_t lo = H5F_LIBVER_EARLIEST, hi = H5F_LIBVER_EARLIEST;
    CHECK(H5Pget_libver_bounds(fapl, &lo, &hi) >= 0);
    CHECK_EQ_INT(lo, H5F_LIBVER_V110);
    CHECK_EQ_INT(hi, H5F_LIBVER_V110);
    H5F_close_degree_t deg = H5F_CLOSE_DEFAULT;
    CHECK(H5Pget_fclose_degree(fapl, &deg) >= 0);
    CHECK_EQ_INT(deg, H5F_CLOSE_STRONG);
    H5Pclose(fapl);
    H5F_info2_t info;
    CHECK(H5Fget_info2(f, &info) >= 0);
    CHECK_EQ_INT(info.super.version, 3); /* the 1.10 superblock */
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

static void test_bf16_named_type(void) {
    hid_t f;
    CHECK_EQ_INT(h5x_create(tpath("bf16.h5"), &f), ERR_OK);
    enum { N = 4096 };
    static float src[N], back[N];
    static uint16_t b[N], hb[N];
    for (int i = 0; i < N; i++) {
        /* finite normal values over the whole exponent range, both signs */
        uint32_t u = rnd();
        uint32_t e = 1 + rnd() % 253;
        u = (u & 0x807fffffu) | (e << 23);
        src[i] = fbits(u);
        b[i] = h5x_f32_to_bf16(src[i]);
    }
    int64_t d[1] = {N};
    CHECK_EQ_INT(h5x_write(f, "/w/a", H5X_BF16, 1, d, b), ERR_OK);
    CHECK_EQ_INT(h5x_write(f, "/w/b", H5X_BF16, 1, d, b), ERR_OK); /* reuses the committed type */
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    CHECK_EQ_INT(h5x_open(tpath("bf16.h5"), 0, &f), ERR_OK);
    H5O_info_t oi;
    CHECK(H5Oget_info_by_name2(f, "/types/bfloat16", &oi, H5O_INFO_BASIC, H5P_DEFAULT) >= 0);
    CHECK_EQ_INT(oi.type, H5O_TYPE_NAMED_DATATYPE);
    hid_t d1 = H5Dopen2(f, "/w/a", H5P_DEFAULT);
    hid_t t = H5Dget_type(d1);
    CHECK(H5Tcommitted(t) > 0);
    char name[256] = "";
    H5Iget_name(t, name, sizeof name);
    CHECK_EQ_STR(name, "/types/bfloat16");
    CHECK_EQ_INT(h5x_classify(t), H5X_BF16);
    char desc[128];
    CHECK_EQ_STR(h5x_type_describe(t, desc, sizeof desc), "bfloat16");
    H5Tclose(t);
    /* HDF5 itself decodes the named type: reading as native float is the plain widening */
    CHECK(H5Dread(d1, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    H5Dclose(d1);
    int same = 1;
    for (int i = 0; i < N; i++) same &= bitsf(back[i]) == ((uint32_t)b[i] << 16);
    CHECK(same);
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    /* HDF5's float -> bf16 conversion equals our round-to-nearest-even on these values */
    memcpy(hb, b, sizeof hb);
    CHECK(H5Tconvert(H5T_NATIVE_FLOAT, h5x_mem_type(H5X_BF16), N, src, NULL, H5P_DEFAULT) >= 0);
    uint16_t *conv = (uint16_t *)src; /* converted in place: first N*2 bytes */
    int diff = 0;
    for (int i = 0; i < N; i++) diff += conv[i] != hb[i];
    CHECK_EQ_INT(diff, 0);
}

static void test_half_conversions(void) {
    /* bf16: exact values, ties to even, overflow, NaN kept, signed zero */
    CHECK_EQ_INT(h5x_f32_to_bf16(1.0f), 0x3f80);
    CHECK_EQ_INT(h5x_f32_to_bf16(-2.0f), 0xc000);
    CHECK_EQ_INT(h5x_f32_to_bf16(fbits(0x3f808000u)), 0x3f80); /* tie, even stays */
    CHECK_EQ_INT(h5x_f32_to_bf16(fbits(0x3f818000u)), 0x3f82); /* tie, odd rounds up */
    CHECK_EQ_INT(h5x_f32_to_bf16(fbits(0x3f808001u)), 0x3f81); /* above the tie */
    CHECK_EQ_INT(h5x_f32_to_bf16(fbits(0x7f7fffffu)), 0x7f80); /* FLT_MAX rounds to inf */
    CHECK_EQ_INT(h5x_f32_to_bf16(fbits(0xff800000u)), 0xff80);
    CHECK_EQ_INT(h5x_f32_to_bf16(-0.0f), 0x8000);
    uint16_t nb = h5x_f32_to_bf16(fbits(0x7f800001u)); /* signalling NaN with payload only in low bits */
    CHECK((nb & 0x7f80) == 0x7f80 && (nb & 0x7f) != 0);
    CHECK(isnan(h5x_bf16_to_f32(h5x_f32_to_bf16(fbits(0xffc00000u)))));
    CHECK(h5x_f32_to_bf16(fbits(0xffc00000u)) & 0x8000);
    /* every finite bf16 survives bf16 -> f32 -> bf16 */
    int bad = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        float x = h5x_bf16_to_f32((uint16_t)v);
        if (isnan(x)) bad += !isnan(h5x_bf16_to_f32(h5x_f32_to_bf16(x)));
        else bad += h5x_f32_to_bf16(x) != v;
    }
    CHECK_EQ_INT(bad, 0);
    /* f16: exact, subnormals, overflow threshold 65520, ties */
    CHECK_EQ_INT(h5x_f32_to_f16(1.0f), 0x3c00);
    CHECK_EQ_INT(h5x_f32_to_f16(65504.0f), 0x7bff);
    CHECK_EQ_INT(h5x_f32_to_f16(65519.99f), 0x7bff);
    CHECK_EQ_INT(h5x_f32_to_f16(65520.0f), 0x7c00);
    CHECK_EQ_INT(h5x_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);      /* smallest subnormal */
    CHECK_EQ_INT(h5x_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);      /* tie to even (0) */
    CHECK_EQ_INT(h5x_f32_to_f16(ldexpf(3.0f, -25)), 0x0002);      /* 1.5 ulp -> 2 */
    CHECK_EQ_INT(h5x_f32_to_f16(ldexpf(1023.5f, -24)), 0x0400);   /* rounds up into the normals */
    CHECK_EQ_INT(h5x_f32_to_f16(fbits(0x3f801000u)), 0x3c00);     /* tie, even stays */
    CHECK_EQ_INT(h5x_f32_to_f16(fbits(0x3f803000u)), 0x3c02);     /* tie, odd rounds up */
    CHECK_NEAR(h5x_f16_to_f32(0x0001), ldexp(1.0, -24), 0);
    CHECK_NEAR(h5x_f16_to_f32(0xc000), -2.0, 0);
    CHECK(isinf(h5x_f16_to_f32(0x7c00)));
    CHECK(isnan(h5x_f16_to_f32(h5x_f32_to_f16(NAN))));
    bad = 0;
    for (uint32_t v = 0; v < 65536; v++) {
        float x = h5x_f16_to_f32((uint16_t)v);
        if (isnan(x)) bad += !isnan(h5x_f16_to_f32(h5x_f32_to_f16(x)));
        else bad += h5x_f32_to_f16(x) != v;
        /* agrees with the C compiler's double arithmetic on the decoded value */
        if (!isnan(x) && !isinf(x) && (v & 0x7c00) != 0x7c00) {
            double m = (double)(v & 0x3ff), e = (double)((v >> 10) & 0x1f);
            double ref = (e == 0 ? ldexp(m, -24) : ldexp(1024.0 + m, (int)e - 25)) * ((v & 0x8000) ? -1 : 1);
            bad += (double)x != ref;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

static void test_errors(void) {
    hid_t f;
    const char *p = tpath("err.h5");
    CHECK_EQ_INT(h5x_create(p, &f), ERR_OK);
    int64_t d23[2] = {2, 3}, d32[2] = {3, 2};
    float v[6] = {0};
    CHECK_EQ_INT(h5x_write(f, "/x/y", H5X_F32, 2, d23, v), ERR_OK);
    /* writing twice is refused */
    CHECK_EQ_INT(h5x_write(f, "/x/y", H5X_F32, 2, d23, v), ERR_INTERNAL);
    CHECK_CONTAINS(err_msg(), "already exists");
    /* wrong shape */
    err_clear();
    CHECK_EQ_INT(h5x_read(f, "/x/y", H5X_F32, 2, d32, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), p);
    CHECK_CONTAINS(err_msg(), "/x/y: expected float32 [3, 2], got float32 [2, 3]");
    /* wrong dtype */
    CHECK_EQ_INT(h5x_read(f, "/x/y", H5X_BF16, 2, d23, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "expected bfloat16 [2, 3], got float32 [2, 3]");
    /* wrong rank */
    CHECK_EQ_INT(h5x_read(f, "/x/y", H5X_F32, 1, (int64_t[]){6}, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "expected float32 [6], got float32 [2, 3]");
    /* missing dataset, and a group is not a dataset */
    CHECK_EQ_INT(h5x_read(f, "/x/z", H5X_F32, 2, d23, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "/x/z: no such dataset");
    CHECK_EQ_INT(h5x_read(f, "/x", H5X_F32, 2, d23, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "/x: cannot open as a dataset");
    /* read_rows out of range */
    CHECK_EQ_INT(h5x_read_rows(f, "/x/y", H5X_F32, 1, 2, v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "rows 1..3 requested, the dataset has 2 rows");
    /* attributes: missing, wrong type */
    int64_t iv;
    CHECK_EQ_INT(h5x_attr_set_str(f, "/x/y", "kind", "weights"), ERR_OK);
    CHECK_EQ_INT(h5x_attr_get_i64(f, "/x/y", "nope", &iv), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "attribute 'nope' is missing");
    CHECK_EQ_INT(h5x_attr_get_i64(f, "/x/y", "kind", &iv), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "attribute 'kind': expected an integer, got string(vlen, utf8)");
    /* append to a fixed-size dataset */
    CHECK(h5x_append(f, "/x/y", H5X_F32, 1, v) != ERR_OK);
    CHECK_CONTAINS(err_msg(), "not unlimited");
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    /* writing through a read-only handle fails with a message naming the file */
    CHECK_EQ_INT(h5x_open(p, 0, &f), ERR_OK);
    CHECK(h5x_write(f, "/new", H5X_F32, 2, d23, v) != ERR_OK);
    CHECK_CONTAINS(err_msg(), p);
    CHECK_CONTAINS(err_msg(), "/new: cannot create dataset: HDF5:");
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    /* open: missing file (ERR_IO), not HDF5 (ERR_DATA), truncated HDF5 (ERR_DATA) */
    CHECK_EQ_INT(h5x_open(tpath("missing.h5"), 0, &f), ERR_IO);
    CHECK_CONTAINS(err_msg(), "missing.h5: cannot open: No such file or directory");
    const char *txt = tpath("text.h5");
    FILE *fp = fopen(txt, "w");
    fputs("this is not HDF5\n", fp);
    fclose(fp);
    CHECK_EQ_INT(h5x_open(txt, 0, &f), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "text.h5: not an HDF5 file");
    /* first 1000 bytes of a real file: signature present, content cut */
    {
        static float big[4096];
        hid_t g;
        CHECK_EQ_INT(h5x_create(tpath("big.h5"), &g), ERR_OK);
        CHECK_EQ_INT(h5x_write(g, "/a/b", H5X_F32, 1, (int64_t[]){4096}, big), ERR_OK);
        CHECK_EQ_INT(h5x_close(&g), ERR_OK);
        FILE *in = fopen(tpath("big.h5"), "rb");
        char buf[1000];
        size_t n = fread(buf, 1, sizeof buf, in);
        fclose(in);
        FILE *out = fopen(tpath("cut.h5"), "wb");
        fwrite(buf, 1, n, out);
        fclose(out);
        int rc = h5x_open(tpath("cut.h5"), 0, &f);
        if (rc == ERR_OK) { /* the superblock may open; reading must then fail cleanly */
            float tmp[4096];
            rc = h5x_read(f, "/a/b", H5X_F32, 1, (int64_t[]){4096}, tmp);
            h5x_close(&f);
        }
        CHECK_EQ_INT(rc, ERR_DATA);
        CHECK_CONTAINS(err_msg(), "cut.h5");
    }
    /* a file cut after its superblock: the innermost HDF5 message is reported */
    {
        CHECK_EQ_INT(write_sample(tpath("whole.h5")), 0);
        FILE *in = fopen(tpath("whole.h5"), "rb");
        static char buf[3000];
        size_t n = fread(buf, 1, sizeof buf, in);
        fclose(in);
        FILE *out = fopen(tpath("cut3000.h5"), "wb");
        fwrite(buf, 1, n, out);
        fclose(out);
        CHECK_EQ_INT(h5x_open(tpath("cut3000.h5"), 0, &f), ERR_DATA);
        CHECK_CONTAINS(err_msg(), "cut3000.h5: cannot open HDF5 file");
        CHECK_CONTAINS(err_msg(), "HDF5: truncated file: eof = 3000");
    }
    /* create in a missing directory */
    CHECK_EQ_INT(h5x_create(tpath("no/such/dir.h5"), &f), ERR_IO);
    CHECK_CONTAINS(err_msg(), "no/such/dir.h5: cannot create HDF5 file: No such file or directory");
}

static void test_attributes(void) {
    hid_t f;
    CHECK_EQ_INT(h5x_create(tpath("attr.h5"), &f), ERR_OK);
    int64_t d[1] = {1};
    CHECK_EQ_INT(h5x_write(f, "/g/x", H5X_I32, 1, d, (int32_t[]){7}), ERR_OK);
    CHECK_EQ_INT(h5x_attr_set_i64(f, ".", "format_version", 3), ERR_OK);
    CHECK_EQ_INT(h5x_attr_set_i64(f, ".", "format_version", -9007199254740993LL), ERR_OK); /* replace */
    CHECK_EQ_INT(h5x_attr_set_f64(f, "/g", "lr", 2.5e-4), ERR_OK);
    CHECK_EQ_INT(h5x_attr_set_str(f, "/g/x", "name", "gr\xc3\xbc\xc3\x9f \xe2\x9c\x93"), ERR_OK);
    CHECK_EQ_INT(h5x_attr_set_str(f, "/g/x", "empty", ""), ERR_OK);
    int64_t shape[4] = {32064, 4096, -1, 0};
    CHECK_EQ_INT(h5x_attr_set_i64s(f, "/g/x", "shape", shape, 4), ERR_OK);
    CHECK_EQ_INT(h5x_attr_set_i64s(f, "/g/x", "none", shape, 0), ERR_OK);
    /* a fixed-length, space-padded string attribute as other tools write it */
    {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 8);
        H5Tset_strpad(t, H5T_STR_SPACEPAD);
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "fixed", t, s, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, t, "abc     ");
        H5Aclose(a);
        H5Sclose(s);
        H5Tclose(t);
    }
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    CHECK_EQ_INT(h5x_open(tpath("attr.h5"), 0, &f), ERR_OK);
    int64_t iv = 0;
    double dv = 0;
    char *s = NULL;
    CHECK_EQ_INT(h5x_attr_get_i64(f, ".", "format_version", &iv), ERR_OK);
    CHECK(iv == -9007199254740993LL);
    CHECK_EQ_INT(h5x_attr_get_f64(f, "/g", "lr", &dv), ERR_OK);
    CHECK(dv == 2.5e-4);
    CHECK_EQ_INT(h5x_attr_get_f64(f, ".", "format_version", &dv), ERR_OK); /* integer widens to double */
    CHECK_EQ_INT(h5x_attr_get_str(f, "/g/x", "name", &s), ERR_OK);
    CHECK_EQ_STR(s, "gr\xc3\xbc\xc3\x9f \xe2\x9c\x93");
    free(s);
    CHECK_EQ_INT(h5x_attr_get_str(f, "/g/x", "empty", &s), ERR_OK);
    CHECK_EQ_STR(s, "");
    free(s);
    CHECK_EQ_INT(h5x_attr_get_str(f, "/", "fixed", &s), ERR_OK);
    CHECK_EQ_STR(s, "abc");
    free(s);
    int64_t got[8];
    int n = -1;
    CHECK_EQ_INT(h5x_attr_get_i64s(f, "/g/x", "shape", got, 8, &n), ERR_OK);
    CHECK_EQ_INT(n, 4);
    CHECK(memcmp(got, shape, sizeof shape) == 0);
    CHECK_EQ_INT(h5x_attr_get_i64s(f, "/g/x", "shape", got, 3, &n), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "4 values, expected at most 3");
    CHECK_EQ_INT(h5x_attr_get_i64s(f, "/g/x", "none", got, 8, &n), ERR_OK);
    CHECK_EQ_INT(n, 0);
    CHECK_EQ_INT(h5x_attr_get_i64(f, "/g/x", "shape", &iv), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "expected one an integer value, got 4 values");
    CHECK(h5x_attr_exists(f, "/g/x", "shape"));
    CHECK(!h5x_attr_exists(f, "/g/x", "nope"));
    CHECK(!h5x_attr_exists(f, "/nope", "x"));
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

static void test_chunked_append(void) {
    hid_t f;
    CHECK_EQ_INT(h5x_create(tpath("chunk.h5"), &f), ERR_OK);
    /* an n-d growable array: [0, 3] then appended */
    int64_t d0[2] = {0, 3};
    h5x_wopts o = {.unlimited = 1, .chunk = {4, 3}};
    CHECK_EQ_INT(h5x_write_opts(f, "/tok", H5X_I32, 2, d0, NULL, &o), ERR_OK);
    int32_t rows[30];
    for (int i = 0; i < 30; i++) rows[i] = i * 7 - 11;
    CHECK_EQ_INT(h5x_append(f, "/tok", H5X_I32, 4, rows), ERR_OK);
    CHECK_EQ_INT(h5x_append(f, "/tok", H5X_I32, 6, rows + 12), ERR_OK);
    CHECK_EQ_INT(h5x_append(f, "/tok", H5X_I32, 0, rows), ERR_OK);
    CHECK_EQ_INT(h5x_append(f, "/tok", H5X_F32, 1, rows), ERR_DATA); /* dtype checked */
    /* compressed, filtered, automatically chunked */
    enum { M = 100000 };
    static float big[M], back[M];
    for (int i = 0; i < M; i++) big[i] = (float)(i % 1000) * 0.5f;
    h5x_wopts z = {.shuffle = 1, .deflate = 4};
    CHECK_EQ_INT(h5x_write_opts(f, "/z", H5X_F32, 1, (int64_t[]){M}, big, &z), ERR_OK);
    /* compound rows, appended as the metrics table will be */
    hid_t ft = row_file_type(), mt = row_type();
    h5x_wopts u = {.unlimited = 1};
    CHECK_EQ_INT(h5x_write_raw(f, "/metrics/train", ft, mt, 1, (int64_t[]){0}, NULL, &u), ERR_OK);
    row r[3] = {{1, 0.5f, 1e-3}, {2, 0.25f, 2e-3}, {3, 0.125f, 3e-3}};
    CHECK_EQ_INT(h5x_append_raw(f, "/metrics/train", mt, 2, r), ERR_OK);
    CHECK_EQ_INT(h5x_append_raw(f, "/metrics/train", mt, 1, r + 2), ERR_OK);
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);

    CHECK_EQ_INT(h5x_open(tpath("chunk.h5"), 0, &f), ERR_OK);
    h5x_dsinfo in;
    CHECK_EQ_INT(h5x_info(f, "/tok", &in), ERR_OK);
    CHECK_EQ_INT(in.dims[0], 10);
    CHECK_EQ_INT(in.dims[1], 3);
    CHECK_EQ_INT(in.maxdims[0], -1);
    CHECK_EQ_INT(in.chunked, 1);
    CHECK_EQ_INT(in.chunk[0], 4);
    int32_t got[30];
    CHECK_EQ_INT(h5x_read(f, "/tok", H5X_I32, 2, (int64_t[]){10, 3}, got), ERR_OK);
    CHECK(memcmp(got, rows, sizeof got) == 0);
    CHECK_EQ_INT(h5x_read_rows(f, "/tok", H5X_I32, 3, 2, got), ERR_OK);
    CHECK(memcmp(got, rows + 9, 6 * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(h5x_info(f, "/z", &in), ERR_OK);
    CHECK_EQ_INT(in.chunked, 1);
    CHECK_EQ_INT(in.nfilters, 2);
    CHECK_EQ_INT(in.chunk[0], (1 << 20) / 4 > M ? M : (1 << 20) / 4);
    CHECK_EQ_INT(h5x_read(f, "/z", H5X_F32, 1, (int64_t[]){M}, back), ERR_OK);
    CHECK(memcmp(back, big, sizeof big) == 0);
    hid_t d = H5Dopen2(f, "/metrics/train", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    char desc[256];
    CHECK_EQ_STR(h5x_type_describe(t, desc, sizeof desc), "compound{step:int64, loss:float32, lr:float64}");
    row rb[3];
    memset(rb, 0, sizeof rb);
    CHECK(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rb) >= 0);
    CHECK(rb[2].step == 3 && rb[2].loss == 0.125f && rb[2].lr == 3e-3);
    CHECK(rb[0].step == 1 && rb[1].lr == 2e-3);
    H5Tclose(t);
    H5Dclose(d);
    H5Tclose(ft);
    H5Tclose(mt);
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

static void test_format_stamp(void) {
    hid_t f;
    int64_t v = 0;
    CHECK_EQ_INT(h5x_create(tpath("stamp.h5"), &f), ERR_OK);
    CHECK_EQ_INT(h5x_check_format(f, "orpo-hpc/checkpoint", 1, &v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "no root attribute 'format'");
    CHECK_EQ_INT(h5x_set_format(f, "orpo-hpc/checkpoint", 2), ERR_OK);
    CHECK_EQ_INT(h5x_check_format(f, "orpo-hpc/checkpoint", 2, &v), ERR_OK);
    CHECK_EQ_INT(v, 2);
    CHECK_EQ_INT(h5x_check_format(f, "orpo-hpc/checkpoint", 1, &v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "stamp.h5: orpo-hpc/checkpoint format_version 2, this build reads versions 1..1");
    CHECK_EQ_INT(h5x_check_format(f, "orpo-hpc/model", 9, &v), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "format is 'orpo-hpc/checkpoint', expected 'orpo-hpc/model'");
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

static void test_groups(void) {
    hid_t f, g;
    CHECK_EQ_INT(h5x_create(tpath("grp.h5"), &f), ERR_OK);
    CHECK(!h5x_exists(f, "/a/b"));
    CHECK_EQ_INT(h5x_group(f, "/a/b", &g), ERR_OK);
    CHECK(h5x_exists(f, "/a/b"));
    CHECK(h5x_exists(f, "a"));
    /* relative paths below an open group */
    CHECK_EQ_INT(h5x_write(g, "c/v", H5X_U8, 1, (int64_t[]){2}, (uint8_t[]){9, 8}), ERR_OK);
    H5Gclose(g);
    CHECK(h5x_exists(f, "/a/b/c/v"));
    uint8_t v[2];
    CHECK_EQ_INT(h5x_read(f, "/a/b/c/v", H5X_U8, 1, (int64_t[]){2}, v), ERR_OK);
    CHECK(v[0] == 9 && v[1] == 8);
    CHECK_EQ_INT(h5x_group(f, "/a/b", &g), ERR_OK); /* opens the existing one */
    H5Gclose(g);
    char name[1024];
    CHECK_CONTAINS(h5x_file_name(f, name, sizeof name), "grp.h5");
    CHECK_EQ_INT(h5x_close(&f), ERR_OK);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--sample")) return write_sample(argv[2]);
    test_roundtrip_dtypes();
    test_format_pinned();
    test_bf16_named_type();
    test_half_conversions();
    test_errors();
    test_attributes();
    test_chunked_append();
    test_groups();
    test_format_stamp();
    CHECK_EQ_INT(write_sample(tpath("sample.h5")), 0);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", test_tmpdir());
    if (!t_fail && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", test_tmpdir());
    TEST_MAIN_END();
}
