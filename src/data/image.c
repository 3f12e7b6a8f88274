/* image — decode + LLaVA-NeXT anyres preprocessing (see image.h, docs/preprocessing.md).
 *
 * Bit-exactness notes (all checked against Pillow 13 / transformers 5.24 by tests/oracle/test_image.c):
 * - The resize replicates Pillow's (13.x) separable convolution resampler for 8-bit images:
 *   double-precision filter weights normalised to sum 1, converted to 22-bit fixed point, two passes
 *   through an 8-bit intermediate; horizontal first unless the height shrinks by more than twice
 *   what the width shrinks (Pillow >= 12 then runs the vertical pass first).
 * - Alpha is composited onto opaque white with Pillow's integer alpha_composite arithmetic (HF's
 *   convert_to_rgb does this for every image whose mode has alpha or a transparency key).
 * - Rescale is float32(double(u8) * rescale), normalisation is float32 (x - mean) / std, like numpy.
 */
#include "data/image.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <stb_image.h>

#ifdef ORPO_HAVE_LIBJPEG
#include <setjmp.h>
#include <stdio.h>
#include <jpeglib.h>
#endif

#include "io/err.h"

void img_config_llava16(img_config *cfg) {
    /* OPENAI_CLIP_MEAN / OPENAI_CLIP_STD, cast from double to float32 as numpy does */
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    anyres_config_llava16(&cfg->grid);
    for (int c = 0; c < 3; c++) {
        cfg->mean[c] = (float)mean[c];
        cfg->std[c] = (float)std[c];
    }
    cfg->rescale = 1.0 / 255.0;
}

/* ---- why a decode failed (img_last_failure) -------------------------------------------------- */

static _Thread_local int t_fail;

static const char *const fail_names[IMG_FAIL_N] = {"none", "empty", "not JPEG or PNG", "truncated", "corrupt",
                                                   "size out of range", "decoder error"};

const char *img_failure_name(int kind) { return kind >= 0 && kind < IMG_FAIL_N ? fail_names[kind] : "unknown"; }
int img_last_failure(void) { return t_fail; }

/* ERR_DATA with the message, remembering the kind of failure */
static int fail(int kind, const char *fmt, ...) ERR_PRINTF(2, 3);
static int fail(int kind, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    t_fail = kind;
    return err_set(ERR_DATA, "%s", msg);
}

void img_free(img_rgb *im) {
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

/* ---- container checks: stb_image tolerates truncation and ignores CRCs; Pillow does not --------- */

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Walk the PNG chunks: every chunk complete and CRC-correct, IHDR first, IEND reached. */
static int png_check(const uint8_t *b, size_t n, const char *at) {
    size_t i = 8;
    int first = 1;
    for (;;) {
        if (n - i < 12)
            return fail(IMG_FAIL_TRUNCATED, "%s: truncated PNG: %zu bytes, the chunk at byte %zu is incomplete; "
                           "expected a complete PNG ending with IEND", at, n, i);
        uint32_t len = be32(b + i);
        const uint8_t *type = b + i + 4;
        if (len > 0x7fffffffu || (size_t)len > n - i - 12)
            return fail(IMG_FAIL_TRUNCATED, "%s: truncated or corrupt PNG: chunk at byte %zu declares %u data "
                           "bytes but only %zu remain; expected a complete PNG", at, i, len, n - i - 12);
        if (first && memcmp(type, "IHDR", 4) != 0)
            return fail(IMG_FAIL_CORRUPT, "%s: corrupt PNG: first chunk is not IHDR (byte 8)", at);
        first = 0;
        uint32_t crc = (uint32_t)crc32(0L, type, (uInt)(len + 4));
        if (crc != be32(b + i + 8 + len))
            return fail(IMG_FAIL_CORRUPT, "%s: corrupt PNG: CRC mismatch in chunk '%c%c%c%c' at byte %zu "
                           "(computed %08x, stored %08x)", at, type[0] >= 32 && type[0] < 127 ? type[0] : '?',
                           type[1] >= 32 && type[1] < 127 ? type[1] : '?', type[2] >= 32 && type[2] < 127 ? type[2] : '?',
                           type[3] >= 32 && type[3] < 127 ? type[3] : '?', i, crc, be32(b + i + 8 + len));
        if (memcmp(type, "IEND", 4) == 0) return ERR_OK;
        i += 12 + (size_t)len;
    }
}

/* Walk the JPEG markers from SOI to EOI: segment lengths inside the buffer, entropy-coded data
 * followed by a marker, EOI present. Catches truncation, which stb_image would silently fill. */
static int jpeg_check(const uint8_t *b, size_t n, const char *at) {
    size_t i = 2;
    for (;;) {
        if (i >= n) break;
        if (b[i] != 0xFF)
            return fail(IMG_FAIL_CORRUPT, "%s: corrupt JPEG: byte %zu is 0x%02x, expected a marker (0xFF)",
                           at, i, b[i]);
        while (i < n && b[i] == 0xFF) i++; /* fill bytes */
        if (i >= n) break;
        uint8_t m = b[i++];
        if (m == 0xD9) return ERR_OK; /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* TEM, RSTn: no length */
        if (m == 0x00 || m == 0xD8)
            return fail(IMG_FAIL_CORRUPT, "%s: corrupt JPEG: unexpected marker 0xFF%02X at byte %zu", at,
                           m, i - 2);
        if (n - i < 2) break;
        size_t len = ((size_t)b[i] << 8) | b[i + 1];
        if (len < 2)
            return fail(IMG_FAIL_CORRUPT, "%s: corrupt JPEG: segment 0xFF%02X at byte %zu has length %zu, "
                           "expected >= 2", at, m, i - 2, len);
        if (len > n - i) break;
        i += len;
        if (m == 0xDA) { /* start of scan: skip entropy-coded data up to the next real marker */
            while (i + 1 < n && !(b[i] == 0xFF && b[i + 1] != 0x00 && !(b[i + 1] >= 0xD0 && b[i + 1] <= 0xD7))) i++;
            if (i + 1 >= n) {
                i = n;
                break;
            }
        }
    }
    return fail(IMG_FAIL_TRUNCATED, "%s: truncated JPEG: the %zu bytes end before the end-of-image marker "
                   "(FF D9); expected a complete JPEG", at, n);
}

/* Pillow alpha_composite of (r,g,b,a) over opaque white, integer arithmetic with 7 extra bits. */
static uint8_t over_white(uint32_t v, uint32_t a) {
    if (a == 0) return 255;
    uint32_t blend = 255u * (255u - a);
    uint32_t outa255 = a * 255u + blend;
    uint32_t coef1 = a * 255u * 255u * 128u / outa255;
    uint32_t coef2 = 255u * 128u - coef1;
    uint32_t t = v * coef1 + 255u * coef2 + (0x80u << 7);
    return (uint8_t)(((((t >> 8) + t) >> 8)) >> 7);
}

#ifdef ORPO_HAVE_LIBJPEG
/* JPEG through libjpeg(-turbo), the decoder Pillow uses: islow IDCT and fancy upsampling are the
 * library defaults on both sides, so the pixels are bit-identical to Image.open(...).convert("RGB"). */
struct jerr {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr c) {
    struct jerr *e = (struct jerr *)c->err;
    e->mgr.format_message(c, e->msg);
    longjmp(e->jump, 1);
}

static void jerr_silent(j_common_ptr c, int level) { (void)c, (void)level; } /* Pillow ignores warnings */

const char *img_jpeg_backend(void) { return "libjpeg"; }

/* Pillow convert("RGB") of a CMYK pixel: each channel is (255 - k) - c * (255 - k) / 255, rounded. */
static uint8_t cmyk_channel(int c, int k) {
    int nk = 255 - k, t = c * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}


static int jpeg_decode(const uint8_t *b, size_t len, const char *at, img_rgb *out) {
    struct jpeg_decompress_struct c;
    struct jerr e;
    uint8_t *volatile px = NULL;
    uint8_t *volatile row = NULL;
    c.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jerr_exit;
    e.mgr.emit_message = jerr_silent;
    if (setjmp(e.jump)) {
        jpeg_destroy_decompress(&c);
        free(px);
        free(row);
        return fail(IMG_FAIL_DECODE, "%s: cannot decode JPEG (libjpeg: %s)", at, e.msg);
    }
    jpeg_create_decompress(&c);
    jpeg_mem_src(&c, b, (unsigned long)len);
    jpeg_read_header(&c, TRUE);
    int nc = c.num_components;
    if (nc == 4) c.out_color_space = JCS_CMYK;
    else if (nc == 1) c.out_color_space = JCS_GRAYSCALE;
    else c.out_color_space = JCS_RGB;
    int adobe_inverted = nc == 4 && c.saw_Adobe_marker;
    if ((long long)c.image_width * c.image_height > IMG_MAX_PIXELS || c.image_width == 0 || c.image_height == 0) {
        long long w = c.image_width, h = c.image_height;
        jpeg_destroy_decompress(&c);
        return fail(IMG_FAIL_SIZE, "%s: size %lldx%lld (WxH), expected 1..%lld pixels", at, w, h,
                       IMG_MAX_PIXELS);
    }
    jpeg_start_decompress(&c);
    int w = (int)c.output_width, h = (int)c.output_height, oc = c.output_components;
    px = malloc((size_t)w * h * 3);
    row = malloc((size_t)w * oc);
    if (!px || !row) {
        jpeg_destroy_decompress(&c);
        free(px);
        free(row);
        return err_set(ERR_INTERNAL, "%s: out of memory for %dx%d pixels", at, w, h);
    }
    while (c.output_scanline < c.output_height) {
        uint8_t *o = px + (size_t)c.output_scanline * w * 3;
        JSAMPROW r = row;
        jpeg_read_scanlines(&c, &r, 1);
        for (int x = 0; x < w; x++) {
            const uint8_t *q = row + (size_t)x * oc;
            if (oc == 1) {
                o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = q[0];
            } else if (oc == 3) {
                o[3 * x] = q[0], o[3 * x + 1] = q[1], o[3 * x + 2] = q[2];
            } else { /* CMYK; Adobe files store it inverted, Pillow reads them as "CMYK;I" */
                int k = adobe_inverted ? 255 - q[3] : q[3];
                for (int ch = 0; ch < 3; ch++) o[3 * x + ch] = cmyk_channel(adobe_inverted ? 255 - q[ch] : q[ch], k);
            }
        }
    }
    jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    free(row);
    out->w = w;
    out->h = h;
    out->px = px;
    return ERR_OK;
}
#else
const char *img_jpeg_backend(void) { return "stb_image"; }
#endif

int img_decode(const void *buf, size_t len, const char *src, long index, img_rgb *out) {
    const uint8_t *b = buf;
    if (!src) src = "(memory)";
    char at[1400]; /* "data.h5: image 4" (index < 0: just src), the start of every message */
    if (index >= 0) snprintf(at, sizeof at, "%s: image %ld", src, index);
    else snprintf(at, sizeof at, "%s", src);
    t_fail = IMG_FAIL_NONE;
    out->w = out->h = 0;
    out->px = NULL;
    if (!b || len == 0)
        return fail(IMG_FAIL_EMPTY, "%s: empty (0 bytes), expected JPEG or PNG bytes", at);
    if (len > (size_t)INT_MAX)
        return fail(IMG_FAIL_SIZE, "%s: %zu bytes, expected at most %d", at, len, INT_MAX);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    int is_png = len >= 8 && memcmp(b, png_sig, 8) == 0;
    int is_jpeg = len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
    if (!is_png && !is_jpeg) {
        uint8_t h[4] = {0, 0, 0, 0};
        memcpy(h, b, len < 4 ? len : 4);
        return fail(IMG_FAIL_FORMAT, "%s: unknown format (%zu bytes starting %02x %02x %02x %02x), expected JPEG "
                       "(ff d8 ff) or PNG (89 50 4e 47)", at, len, h[0], h[1], h[2], h[3]);
    }
    int rc = is_png ? png_check(b, len, at) : jpeg_check(b, len, at);
    if (rc) return rc;
#ifdef ORPO_HAVE_LIBJPEG
    if (is_jpeg) return jpeg_decode(b, len, at, out);
#endif

    int w, h, n;
    if (!stbi_info_from_memory(b, (int)len, &w, &h, &n))
        return fail(IMG_FAIL_DECODE, "%s: cannot read the %s header (%s)", at, is_png ? "PNG" : "JPEG",
                       stbi_failure_reason());
    if (w <= 0 || h <= 0 || (long long)w * h > IMG_MAX_PIXELS)
        return fail(IMG_FAIL_SIZE, "%s: size %dx%d (WxH), expected 1..%lld pixels", at, w, h,
                       IMG_MAX_PIXELS);

    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) return err_set(ERR_INTERNAL, "%s: out of memory for %dx%d pixels", at, w, h);

    if (is_png && n == 1 && stbi_is_16_bit_from_memory(b, (int)len)) {
        /* 16-bit greyscale opens in Pillow as mode I;16, and convert("RGB") clips each value to 255
         * (it does not scale). stb_image would keep the high byte instead. */
        int w2, h2, n2;
        uint16_t *g = stbi_load_16_from_memory(b, (int)len, &w2, &h2, &n2, 1);
        if (!g || w2 != w || h2 != h) {
            if (g) stbi_image_free(g);
            free(px);
            return fail(IMG_FAIL_DECODE, "%s: cannot decode 16-bit PNG (%s)", at,
                           g ? "size changed" : stbi_failure_reason());
        }
        for (size_t i = 0; i < (size_t)w * h; i++) {
            uint8_t v = g[i] > 255 ? 255 : (uint8_t)g[i];
            px[3 * i] = px[3 * i + 1] = px[3 * i + 2] = v;
        }
        stbi_image_free(g);
    } else {
        int w2, h2, n2;
        uint8_t *p = stbi_load_from_memory(b, (int)len, &w2, &h2, &n2, 4);
        if (!p || w2 != w || h2 != h) {
            if (p) stbi_image_free(p);
            free(px);
            return fail(IMG_FAIL_DECODE, "%s: cannot decode %s (%s)", at, is_png ? "PNG" : "JPEG",
                           p ? "size changed" : stbi_failure_reason());
        }
        for (size_t i = 0; i < (size_t)w * h; i++) {
            const uint8_t *q = p + 4 * i;
            if (q[3] == 255) {
                px[3 * i] = q[0];
                px[3 * i + 1] = q[1];
                px[3 * i + 2] = q[2];
            } else {
                px[3 * i] = over_white(q[0], q[3]);
                px[3 * i + 1] = over_white(q[1], q[3]);
                px[3 * i + 2] = over_white(q[2], q[3]);
            }
        }
        stbi_image_free(p);
    }
    out->w = w;
    out->h = h;
    out->px = px;
    return ERR_OK;
}

/* ---- Pillow-compatible BICUBIC resampling ------------------------------------------------------ */

#define FIX_BITS 22 /* fixed-point fraction bits of the 8-bit path: 32 - 8 - 2 */

static double cubic(double x) { /* Keys cubic, a = -0.5, evaluated in Pillow's operation order */
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct {
    int ksize;     /* coefficients per output sample (stride of k) */
    int *first;    /* [out] first source index */
    int *count;    /* [out] number of source samples used */
    int32_t *k;    /* [out * ksize] fixed-point weights */
} taps;

static void taps_free(taps *t) {
    free(t->first);
    free(t->count);
    free(t->k);
}

static int taps_make(int in_size, int out_size, taps *t) {
    double scale = (double)(float)in_size / out_size; /* Pillow's box is float */
    double fs = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * fs;
    int ksize = (int)ceil(support) * 2 + 1;
    memset(t, 0, sizeof *t);
    t->ksize = ksize;
    t->first = malloc(sizeof(int) * (size_t)out_size);
    t->count = malloc(sizeof(int) * (size_t)out_size);
    t->k = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    if (!t->first || !t->count || !t->k || !w) {
        free(w);
        taps_free(t);
        return err_set(ERR_INTERNAL, "img_resize: out of memory for %d x %d coefficients", out_size, ksize);
    }
    double inv = 1.0 / fs;
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int cnt = hi - lo;
        double sum = 0.0;
        for (int j = 0; j < cnt; j++) {
            w[j] = cubic((j + lo - center + 0.5) * inv);
            sum += w[j];
        }
        int32_t *k = t->k + (size_t)o * ksize;
        for (int j = 0; j < ksize; j++) {
            double v = j < cnt ? (sum != 0.0 ? w[j] / sum : w[j]) : 0.0;
            k[j] = v < 0 ? (int32_t)(-0.5 + v * (1 << FIX_BITS)) : (int32_t)(0.5 + v * (1 << FIX_BITS));
        }
        t->first[o] = lo;
        t->count[o] = cnt;
    }
    free(w);
    return ERR_OK;
}

static inline uint8_t clip_fix(int32_t s) {
    int32_t v = s >> FIX_BITS; /* arithmetic shift: negatives stay negative */
    return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* horizontal pass: rows [0, nrows) of src (src_w pixels wide) -> dst (out_w wide) */
static void pass_h(const uint8_t *src, int src_w, int nrows, const taps *t, uint8_t *dst, int out_w) {
    for (int y = 0; y < nrows; y++) {
        const uint8_t *row = src + (size_t)y * src_w * 3;
        uint8_t *o = dst + (size_t)y * out_w * 3;
        for (int x = 0; x < out_w; x++) {
            const int32_t *k = t->k + (size_t)x * t->ksize;
            const uint8_t *p = row + (size_t)t->first[x] * 3;
            int32_t s0 = 1 << (FIX_BITS - 1), s1 = s0, s2 = s0;
            for (int j = 0, cnt = t->count[x]; j < cnt; j++, p += 3) {
                s0 += p[0] * k[j];
                s1 += p[1] * k[j];
                s2 += p[2] * k[j];
            }
            o[3 * x] = clip_fix(s0);
            o[3 * x + 1] = clip_fix(s1);
            o[3 * x + 2] = clip_fix(s2);
        }
    }
}

/* vertical pass: src rows start at source row `row0`; width w pixels; out_h output rows -> dst */
static void pass_v(const uint8_t *src, int w, int row0, const taps *t, uint8_t *dst, int out_h) {
    size_t stride = (size_t)w * 3;
    for (int y = 0; y < out_h; y++) {
        const int32_t *k = t->k + (size_t)y * t->ksize;
        const uint8_t *base = src + (size_t)(t->first[y] - row0) * stride;
        int cnt = t->count[y];
        uint8_t *o = dst + (size_t)y * stride;
        for (size_t x = 0; x < stride; x++) {
            int32_t s = 1 << (FIX_BITS - 1);
            const uint8_t *p = base + x;
            for (int j = 0; j < cnt; j++, p += stride) s += *p * k[j];
            o[x] = clip_fix(s);
        }
    }
}

int img_resize(const img_rgb *in, int out_w, int out_h, img_rgb *out) {
    out->w = out->h = 0;
    out->px = NULL;
    if (!in || !in->px || in->w <= 0 || in->h <= 0 || out_w <= 0 || out_h <= 0 || out_w > 65536 || out_h > 65536)
        return err_set(ERR_ARGS, "img_resize: %dx%d -> %dx%d, expected positive sizes (at most 65536)", in ? in->w : 0,
                       in ? in->h : 0, out_w, out_h);
    int need_h = out_w != in->w, need_v = out_h != in->h;
    uint8_t *dst = malloc((size_t)out_w * out_h * 3);
    if (!dst) return err_set(ERR_INTERNAL, "img_resize: out of memory for %dx%d", out_w, out_h);
    if (!need_h || !need_v) { /* one pass (or a copy) */
        int rc = ERR_OK;
        taps t;
        if (need_h && !(rc = taps_make(in->w, out_w, &t))) pass_h(in->px, in->w, in->h, &t, dst, out_w), taps_free(&t);
        else if (need_v && !(rc = taps_make(in->h, out_h, &t))) pass_v(in->px, in->w, 0, &t, dst, out_h), taps_free(&t);
        else if (!need_h && !need_v) memcpy(dst, in->px, (size_t)out_w * out_h * 3);
        if (rc) {
            free(dst);
            return rc;
        }
        out->w = out_w, out->h = out_h, out->px = dst;
        return ERR_OK;
    }
    /* Pillow >= 12: when the height shrinks by more than twice what the width shrinks, the vertical
     * pass runs first; otherwise horizontal first, on the source rows the vertical pass reads. */
    int h_first = !((in->h - out_h) > 0 && (in->h - out_h) > (in->w - out_w) * 2);
    taps tv, th;
    int rc = taps_make(in->h, out_h, &tv);
    if (rc) {
        free(dst);
        return rc;
    }
    rc = taps_make(in->w, out_w, &th);
    if (rc) {
        taps_free(&tv);
        free(dst);
        return rc;
    }
    uint8_t *tmp;
    if (h_first) {
        int y0 = tv.first[0], y1 = tv.first[out_h - 1] + tv.count[out_h - 1];
        tmp = malloc((size_t)out_w * (y1 - y0) * 3);
        if (tmp) {
            pass_h(in->px + (size_t)y0 * in->w * 3, in->w, y1 - y0, &th, tmp, out_w);
            pass_v(tmp, out_w, y0, &tv, dst, out_h);
        }
    } else {
        tmp = malloc((size_t)in->w * out_h * 3);
        if (tmp) {
            pass_v(in->px, in->w, 0, &tv, tmp, out_h);
            pass_h(tmp, in->w, out_h, &th, dst, out_w);
        }
    }
    taps_free(&th);
    taps_free(&tv);
    if (!tmp) {
        free(dst);
        return err_set(ERR_INTERNAL, "img_resize: out of memory for the intermediate of %dx%d -> %dx%d", in->w, in->h,
                       out_w, out_h);
    }
    free(tmp);
    out->w = out_w, out->h = out_h, out->px = dst;
    return ERR_OK;
}

/* ---- anyres ----------------------------------------------------------------------------------- */

int img_anyres_u8(const img_rgb *im, const img_config *cfg, uint8_t *out, int max_patches, int *n_patches) {
    int rc = anyres_config_check(&cfg->grid);
    if (rc) return rc;
    if (!im || !im->px || im->w <= 0 || im->h <= 0)
        return err_set(ERR_ARGS, "img_anyres_u8: empty image, expected decoded pixels");
    int tile = cfg->grid.tile, bh, bw;
    rc = anyres_select(&cfg->grid, im->h, im->w, &bh, &bw);
    if (rc) return rc;
    int rows = bh / tile, cols = bw / tile, n = 1 + rows * cols;
    if (n > max_patches)
        return err_set(ERR_ARGS, "img_anyres_u8: image %dx%d (HxW) needs %d patches, the buffer holds %d", im->h,
                       im->w, n, max_patches);
    size_t psz = (size_t)tile * tile * 3;

    /* patch 0: the whole image squashed to tile x tile */
    img_rgb base;
    rc = img_resize(im, tile, tile, &base);
    if (rc) return rc;
    memcpy(out, base.px, psz);
    img_free(&base);

    /* patches 1..: aspect-preserving resize into the pinpoint, centred on black, cut row-major */
    int nh, nw;
    anyres_resize_target(im->h, im->w, bh, bw, &nh, &nw);
    img_rgb r;
    rc = img_resize(im, nw, nh, &r);
    if (rc) return rc;
    int top = (bh - nh) / 2, left = (bw - nw) / 2;
    for (int ty = 0; ty < rows; ty++) {
        for (int tx = 0; tx < cols; tx++) {
            uint8_t *p = out + (size_t)(1 + ty * cols + tx) * psz;
            for (int y = 0; y < tile; y++) {
                uint8_t *o = p + (size_t)y * tile * 3;
                int sy = ty * tile + y - top;
                memset(o, 0, (size_t)tile * 3);
                if (sy < 0 || sy >= nh) continue;
                int x0 = tx * tile - left; /* source column of the tile's first pixel */
                int a = x0 < 0 ? -x0 : 0;  /* first tile column inside the resized image */
                int e = nw - x0 < tile ? nw - x0 : tile;
                if (e > a) memcpy(o + (size_t)a * 3, r.px + ((size_t)sy * nw + (x0 + a)) * 3, (size_t)(e - a) * 3);
            }
        }
    }
    img_free(&r);
    *n_patches = n;
    return ERR_OK;
}

void img_normalize(const uint8_t *u8, int n_patches, const img_config *cfg, float *out) {
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)((double)v * cfg->rescale);
            lut[c][v] = (x - cfg->mean[c]) / cfg->std[c];
        }
    size_t hw = (size_t)cfg->grid.tile * cfg->grid.tile;
    for (int p = 0; p < n_patches; p++) {
        const uint8_t *s = u8 + (size_t)p * hw * 3;
        float *o = out + (size_t)p * hw * 3;
        for (size_t i = 0; i < hw; i++) {
            o[i] = lut[0][s[3 * i]];
            o[hw + i] = lut[1][s[3 * i + 1]];
            o[2 * hw + i] = lut[2][s[3 * i + 2]];
        }
    }
}

int img_preprocess(const img_rgb *im, const img_config *cfg, float *out, int max_patches, int *n_patches) {
    int rc = anyres_config_check(&cfg->grid);
    if (rc) return rc;
    int n = im && im->px ? anyres_num_patches(&cfg->grid, im->h, im->w) : -1;
    if (n < 0) return err_code() ? err_code() : err_set(ERR_ARGS, "img_preprocess: empty image");
    if (n > max_patches)
        return err_set(ERR_ARGS, "img_preprocess: image %dx%d (HxW) needs %d patches, the buffer holds %d", im->h,
                       im->w, n, max_patches);
    size_t psz = (size_t)cfg->grid.tile * cfg->grid.tile * 3;
    uint8_t *u8 = malloc(psz * n);
    if (!u8) return err_set(ERR_INTERNAL, "img_preprocess: out of memory for %d patches", n);
    rc = img_anyres_u8(im, cfg, u8, n, n_patches);
    if (!rc) img_normalize(u8, *n_patches, cfg, out);
    free(u8);
    return rc;
}
