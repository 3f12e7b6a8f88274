/* Unit test: image decode robustness (truncation / bit-flip fuzz, bad formats: ERR_DATA naming the
 * caller's source and image index, never a crash; run under ASan + UBSan), anyres geometry of the
 * pixel output (base first, centred black padding, row-major tiles) and argument checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "io/err.h"
#include "test.h"

static uint8_t *read_fixture(const char *rel, size_t *len) {
    FILE *f = fopen(test_fixture(rel), "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint32_t rng = 12345u;
static uint32_t next(void) { return rng = rng * 1664525u + 1013904223u; }

/* Decode must fail with ERR_DATA naming "pair.h5" and "image 42", or succeed with a sane image that
 * the tiny-config preprocessing then handles. */
static int decode_one(const uint8_t *b, size_t n, int must_fail) {
    img_rgb im;
    err_clear();
    int rc = img_decode(b, n, "pair.h5", 42, &im);
    if (rc == ERR_OK) {
        CHECK(!must_fail);
        CHECK(im.w > 0 && im.h > 0 && im.px != NULL);
        img_config cfg;
        img_config_llava16(&cfg);
        cfg.grid.tile = 28;
        cfg.grid.n_pinpoints = 2;
        cfg.grid.pinpoints[0][0] = 28, cfg.grid.pinpoints[0][1] = 56;
        cfg.grid.pinpoints[1][0] = 56, cfg.grid.pinpoints[1][1] = 28;
        float *out = malloc(sizeof(float) * 3 * 28 * 28 * 3);
        int np = 0;
        CHECK_EQ_INT(img_preprocess(&im, &cfg, out, 3, &np), ERR_OK);
        CHECK_EQ_INT(np, 3);
        free(out);
        img_free(&im);
        return 0;
    }
    CHECK_EQ_INT(rc, ERR_DATA);
    CHECK(im.px == NULL);
    if (rc != ERR_DATA || !strstr(err_msg(), "image 42") || !strstr(err_msg(), "pair.h5"))
        fprintf(stderr, "unexpected error %d: %s\n", rc, err_msg());
    CHECK_CONTAINS(err_msg(), "pair.h5: image 42");
    return 1;
}

static void fuzz(const char *rel, int flips) {
    size_t n;
    uint8_t *orig = read_fixture(rel, &n);
    CHECK(orig != NULL && n > 0);
    if (!orig || !n) return;
    CHECK_EQ_INT(decode_one(orig, n, 0), 0); /* the intact file decodes */
    /* every proper prefix (stepping so that big files stay quick) must be rejected */
    size_t step = n / 400 + 1;
    for (size_t len = 0; len < n; len += (len < 64 ? 1 : step)) {
        uint8_t *cut = malloc(len ? len : 1); /* exact-size copy so ASan sees any overread */
        memcpy(cut, orig, len);
        decode_one(cut, len, 1);
        free(cut);
    }
    decode_one(orig, n - 1, 1);
    /* random 1..3 bit flips: error or a valid image, never a crash */
    int failed = 0;
    for (int i = 0; i < flips; i++) {
        uint8_t *m = malloc(n);
        memcpy(m, orig, n);
        int k = 1 + (int)(next() % 3);
        for (int j = 0; j < k; j++) {
            size_t pos = next() % n;
            m[pos] ^= (uint8_t)(1u << (next() % 8));
        }
        failed += decode_one(m, n, 0);
        free(m);
    }
    printf("fuzz %s: %zu bytes, %d of %d bit-flipped copies rejected\n", rel, n, failed, flips);
    free(orig);
}

int main(void) {
    /* bad inputs */
    img_rgb im;
    err_clear();
    CHECK_EQ_INT(img_decode(NULL, 0, "pair.h5", 7, &im), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "image 7");
    static const uint8_t gif[] = "GIF89a\x01\x00\x01\x00";
    CHECK_EQ_INT(img_decode(gif, sizeof gif, "pair.h5", 8, &im), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "expected JPEG");
    CHECK_CONTAINS(err_msg(), "47 49 46 38");
    static const uint8_t soi_only[] = {0xFF, 0xD8, 0xFF};
    CHECK_EQ_INT(img_decode(soi_only, sizeof soi_only, NULL, 9, &im), ERR_DATA);
    CHECK_CONTAINS(err_msg(), "image 9");

    /* truncation and bit-flip fuzz over PNG (RGB, RGBA, grey, LA, palette, 16-bit) and JPEG files */
    fuzz("image/tiny.png", 200);
    fuzz("image/rgba.png", 150);
    fuzz("image/dec_la.png", 200);
    fuzz("image/dec_paltrns.png", 200);
    fuzz("image/dec_grey16.png", 200);
    fuzz("image/dec_interlaced.png", 200);
    fuzz("image/small.jpg", 200);
    fuzz("image/dec_progjpg.jpg", 200);
    fuzz("image/dec_greyjpg.jpg", 200);
    fuzz("image/dec_cmykjpg.jpg", 100);

    /* geometry on a constant image: 100x300 (HxW) -> pinpoint 336x672, content 225 rows (100 * 2.24
     * rounds up), padding top (336 - 225) / 2 = 55 rows, bottom 56; base patch fully coloured */
    img_config cfg;
    img_config_llava16(&cfg);
    img_rgb c = {300, 100, malloc(300 * 100 * 3)};
    for (int i = 0; i < 300 * 100; i++) c.px[3 * i] = 10, c.px[3 * i + 1] = 200, c.px[3 * i + 2] = 30;
    int P = anyres_num_patches(&cfg.grid, 100, 300);
    CHECK_EQ_INT(P, 3);
    uint8_t *u = malloc((size_t)P * 336 * 336 * 3);
    int np = 0;
    CHECK_EQ_INT(img_anyres_u8(&c, &cfg, u, P, &np), ERR_OK);
    CHECK_EQ_INT(np, 3);
    int base_ok = 1, rows_col = 0, rows_black = 0, mixed = 0;
    for (int i = 0; i < 336 * 336; i++) base_ok &= u[3 * i] == 10 && u[3 * i + 1] == 200 && u[3 * i + 2] == 30;
    CHECK(base_ok);
    for (int p = 1; p < 3; p++)
        for (int y = 0; y < 336; y++) {
            const uint8_t *row = u + ((size_t)p * 336 + y) * 336 * 3;
            int col = 1, black = 1;
            for (int x = 0; x < 336; x++) {
                col &= row[3 * x] == 10 && row[3 * x + 1] == 200 && row[3 * x + 2] == 30;
                black &= !row[3 * x] && !row[3 * x + 1] && !row[3 * x + 2];
            }
            rows_col += col, rows_black += black, mixed += !col && !black;
            if (p == 1 && y == 54) CHECK(black);
            if (p == 1 && y == 55) CHECK(col);
            if (p == 2 && y == 279) CHECK(col);
            if (p == 2 && y == 280) CHECK(black);
        }
    CHECK_EQ_INT(rows_col, 2 * 225);
    CHECK_EQ_INT(rows_black, 2 * (55 + 56));
    CHECK_EQ_INT(mixed, 0);
    /* normalised padding is (0 - mean) / std, e.g. -1.7922626 for red */
    float *f = malloc(sizeof(float) * (size_t)P * 3 * 336 * 336);
    CHECK_EQ_INT(img_preprocess(&c, &cfg, f, P, &np), ERR_OK);
    CHECK_NEAR(f[(size_t)1 * 3 * 336 * 336], -1.7922626, 1e-6);            /* patch 1, red, (0, 0) */
    CHECK_NEAR(f[(size_t)1 * 3 * 336 * 336 + 2 * 336 * 336], -1.4802198, 1e-6); /* blue */
    CHECK_NEAR(f[0], (10.0f / 255.0f - 0.48145466f) / 0.26862954f, 1e-6);    /* base, red */
    /* too small a buffer, bad config */
    err_clear();
    CHECK_EQ_INT(img_preprocess(&c, &cfg, f, 2, &np), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "needs 3 patches");
    cfg.grid.pinpoints[0][1] = 600;
    CHECK_EQ_INT(img_anyres_u8(&c, &cfg, u, P, &np), ERR_ARGS);
    free(f);
    free(u);

    /* resize: same size is a copy; a 1x1 image upsamples to a constant */
    img_rgb r;
    CHECK_EQ_INT(img_resize(&c, 300, 100, &r), ERR_OK);
    CHECK(memcmp(r.px, c.px, 300 * 100 * 3) == 0);
    img_free(&r);
    img_rgb one = {1, 1, malloc(3)};
    one.px[0] = 255, one.px[1] = 0, one.px[2] = 77;
    CHECK_EQ_INT(img_resize(&one, 5, 3, &r), ERR_OK);
    int same = 1;
    for (int i = 0; i < 15; i++) same &= r.px[3 * i] == 255 && r.px[3 * i + 1] == 0 && r.px[3 * i + 2] == 77;
    CHECK(same);
    img_free(&r);
    CHECK_EQ_INT(img_resize(&one, 0, 3, &r), ERR_ARGS);
    img_free(&one);
    img_free(&c);
    img_free(&c); /* safe twice */
    TEST_MAIN_END();
}
