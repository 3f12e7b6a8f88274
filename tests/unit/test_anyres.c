/* Unit test: anyres geometry (best pinpoint, grid, resize target, unpad, token count, config checks).
 * Expected numbers come from docs/spec worked examples (re-derived with transformers 5.24) and hand
 * arithmetic written next to each case; the exhaustive comparison lives in tests/oracle/test_image.c. */
#include "data/anyres.h"
#include "io/err.h"
#include "test.h"

static anyres_config tiny(void) {
    static const int pp[4][2] = {{56, 56}, {56, 112}, {112, 56}, {112, 112}};
    anyres_config c;
    c.tile = 56;
    c.patch = 14;
    c.n_pinpoints = 4;
    for (int i = 0; i < 4; i++) c.pinpoints[i][0] = pp[i][0], c.pinpoints[i][1] = pp[i][1];
    return c;
}

int main(void) {
    anyres_config c;
    anyres_config_llava16(&c);
    CHECK_EQ_INT(anyres_config_check(&c), ERR_OK);

    /* worked examples: H x W -> tokens (HF processor) */
    static const struct { int h, w; long long n; int rows, cols; } ex[] = {
        {899, 1024, 2634, 2, 2}, {480, 640, 2340, 2, 2}, {560, 560, 2928, 2, 2}, {1080, 1920, 1948, 2, 2},
        {1000, 300, 2232, 3, 1}, {300, 1000, 2182, 1, 3}, {336, 336, 1176, 1, 2}, {100, 100, 1176, 1, 2},
        {200, 100, 888, 1, 2},   /* portrait but tiny: the tie keeps the first pinpoint (336, 672) */
        {235, 1128, 1744, 1, 3}, /* HF's round(., 7) keeps 16 rows where plain truncation gives 14 */
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        int r = 0, cc = 0;
        CHECK_EQ_INT(anyres_grid(&c, ex[i].h, ex[i].w, &r, &cc), ERR_OK);
        CHECK_EQ_INT(r, ex[i].rows);
        CHECK_EQ_INT(cc, ex[i].cols);
        CHECK_EQ_INT(anyres_num_image_tokens(&c, ex[i].h, ex[i].w), ex[i].n);
        CHECK_EQ_INT(anyres_num_patches(&c, ex[i].h, ex[i].w), 1 + ex[i].rows * ex[i].cols);
    }

    /* best pinpoint edge cases */
    int bh = 0, bw = 0;
    CHECK_EQ_INT(anyres_select(&c, 672, 672, &bh, &bw), ERR_OK); /* exact fit */
    CHECK_EQ_INT(bh, 672);
    CHECK_EQ_INT(bw, 672);
    CHECK_EQ_INT(anyres_select(&c, 1, 1, &bh, &bw), ERR_OK); /* everything ties at eff = 1: first, least waste */
    CHECK_EQ_INT(bh, 336);
    CHECK_EQ_INT(bw, 672);
    CHECK_EQ_INT(anyres_select(&c, 2000, 100, &bh, &bw), ERR_OK); /* very tall: 3x1 wins on effective area */
    CHECK_EQ_INT(bh, 1008);
    CHECK_EQ_INT(bw, 336);
    /* waste tie-break: both 1x2 and 2x2 hold a 300x600 image whole (eff = 180000); 1x2 wastes less */
    CHECK_EQ_INT(anyres_select(&c, 300, 600, &bh, &bw), ERR_OK);
    CHECK_EQ_INT(bh, 336);
    CHECK_EQ_INT(bw, 672);
    /* order matters only on exact ties: reversed list, same tiny image -> the (new) first 2-tile pinpoint */
    anyres_config rev = c;
    for (int i = 0; i < 5; i++) rev.pinpoints[i][0] = c.pinpoints[4 - i][0], rev.pinpoints[i][1] = c.pinpoints[4 - i][1];
    CHECK_EQ_INT(anyres_select(&rev, 100, 100, &bh, &bw), ERR_OK);
    CHECK_EQ_INT(bh, 672);
    CHECK_EQ_INT(bw, 336);
    /* 1 x 2000: every pinpoint truncates the height to 0, so all have eff = 0; the first one still wins
     * on waste (0 == 0 and waste < inf), and unpad keeps 0 rows: only the 576 base tokens remain */
    CHECK_EQ_INT(anyres_select(&c, 1, 2000, &bh, &bw), ERR_OK);
    CHECK_EQ_INT(bh, 336);
    CHECK_EQ_INT(bw, 672);
    CHECK_EQ_INT(anyres_num_image_tokens(&c, 1, 2000), 576);
    err_clear();
    CHECK_EQ_INT(anyres_select(&c, 0, 5, &bh, &bw), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "0x5");
    CHECK_EQ_INT(anyres_num_patches(&c, 0, 5), -1);
    CHECK_EQ_INT(anyres_select(&c, -3, 5, &bh, &bw), ERR_ARGS);

    /* resize target: 899x1024 into 672x672 -> width-bound, h = ceil(899 * 0.65625) = 590 */
    int nh, nw;
    anyres_resize_target(899, 1024, 672, 672, &nh, &nw);
    CHECK_EQ_INT(nh, 590);
    CHECK_EQ_INT(nw, 672);
    anyres_resize_target(100, 300, 336, 672, &nh, &nw); /* 100 * (672/300) = 224.00000000000003 -> ceil 225 */
    CHECK_EQ_INT(nh, 225);
    CHECK_EQ_INT(nw, 672);
    anyres_resize_target(336, 672, 336, 672, &nh, &nw); /* equal scales take the else branch */
    CHECK_EQ_INT(nh, 336);
    CHECK_EQ_INT(nw, 672);
    anyres_resize_target(5, 7, 56, 56, &nh, &nw); /* sw 8 < sh 11.2: h = ceil(40) = 40 */
    CHECK_EQ_INT(nh, 40);
    CHECK_EQ_INT(nw, 56);

    /* unpad: 899x1024 on a 48x48 map keeps rows [3, 45) */
    int r0, nr, c0, nc;
    anyres_unpad(899, 1024, 48, 48, &r0, &nr, &c0, &nc);
    CHECK_EQ_INT(r0, 3);
    CHECK_EQ_INT(nr, 42);
    CHECK_EQ_INT(c0, 0);
    CHECK_EQ_INT(nc, 48);
    /* odd remainder: 120x500 on 24x48: nh = trunc(11.52) = 11, pad = 6 each side, 12 rows kept (nh + 1) */
    anyres_unpad(120, 500, 24, 48, &r0, &nr, &c0, &nc);
    CHECK_EQ_INT(r0, 6);
    CHECK_EQ_INT(nr, 12);
    CHECK_EQ_INT(anyres_num_image_tokens(&c, 120, 500), 576 + 12 * 49);
    /* tall: 1000x300 on 72x24: nw = trunc(300 * 72 / 1000 = 21.6) = 21, pad 1, 22 cols */
    anyres_unpad(1000, 300, 72, 24, &r0, &nr, &c0, &nc);
    CHECK_EQ_INT(c0, 1);
    CHECK_EQ_INT(nc, 22);
    CHECK_EQ_INT(nr, 72);

    /* Python int(round(x, 7)) */
    CHECK_EQ_INT(anyres_trunc_round7(13.99999996), 14);
    CHECK_EQ_INT(anyres_trunc_round7(13.9999999), 13);
    CHECK_EQ_INT(anyres_trunc_round7(14.0), 14);
    CHECK_EQ_INT(anyres_trunc_round7(14.4999), 14);
    CHECK_EQ_INT(anyres_trunc_round7(0.99999999), 1);
    CHECK_EQ_INT(anyres_trunc_round7(0.0), 0);

    /* tiny config: 56-pixel tiles, 4x4 features per tile */
    anyres_config t = tiny();
    CHECK_EQ_INT(anyres_config_check(&t), ERR_OK);
    CHECK_EQ_INT(anyres_num_patches(&t, 5, 7), 2); /* 56x56 pinpoint: one tile + base */
    CHECK_EQ_INT(anyres_num_image_tokens(&t, 5, 7), 16 + 2 * 5); /* 4x4 map, 7/5 wider: nh = 2, pad 1 -> 2 rows */
    CHECK_EQ_INT(anyres_num_patches(&t, 400, 400), 5);
    CHECK_EQ_INT(anyres_num_image_tokens(&t, 400, 400), 16 + 8 * 9);

    /* config validation */
    anyres_config bad = c;
    bad.pinpoints[2][1] = 700; /* not a multiple of 336 */
    err_clear();
    CHECK_EQ_INT(anyres_config_check(&bad), ERR_ARGS);
    CHECK_CONTAINS(err_msg(), "pinpoint 2");
    bad = c;
    bad.patch = 15;
    CHECK_EQ_INT(anyres_config_check(&bad), ERR_ARGS);
    bad = c;
    bad.n_pinpoints = 0;
    CHECK_EQ_INT(anyres_config_check(&bad), ERR_ARGS);
    CHECK_EQ_INT(anyres_select(&bad, 10, 10, &bh, &bw), ERR_ARGS);
    bad = c;
    bad.n_pinpoints = ANYRES_MAX_PINPOINTS + 1;
    CHECK_EQ_INT(anyres_config_check(&bad), ERR_ARGS);
    bad = c;
    bad.tile = 0;
    CHECK_EQ_INT(anyres_config_check(&bad), ERR_ARGS);
    TEST_MAIN_END();
}
