/* image — decode JPEG/PNG bytes and run LLaVA-NeXT anyres preprocessing, matching the HF
 * LlavaNextImageProcessorPil of transformers 5.24 (Pillow BICUBIC, black padding, CLIP normalisation).
 *
 * Pipeline (docs/preprocessing.md): decode -> RGB (alpha composited onto white, as HF's convert_to_rgb)
 * -> best pinpoint (anyres) -> aspect-preserving bicubic resize -> centred zero padding -> row-major
 * tile x tile crops; the whole image squashed to tile x tile goes FIRST; then x/255, (x - mean)/std.
 *
 *   img_config_llava16(cfg)                  llava-v1.6-mistral-7b-hf: 336 tiles, 5 pinpoints, OpenAI CLIP mean/std
 *   img_decode(buf, len, src, index, out)    JPEG/PNG bytes -> RGB8; ERR_DATA "src: image index: why" on bad bytes
 *                                            ("src: why" when index < 0)
 *   img_last_failure()                       the IMG_FAIL_* of this thread's last failed img_decode (for counts)
 *   img_failure_name(kind)                   "truncated", "corrupt", ... (report lines)
 *   img_jpeg_backend()                       "libjpeg" (built with ORPO_HAVE_LIBJPEG: Pillow-identical) or "stb_image"
 *   img_free(im)                             release the pixels of an img_rgb (safe on a zeroed struct)
 *   img_resize(in, out_w, out_h, out)        Pillow-exact BICUBIC resize of an RGB8 image (8-bit fixed point)
 *   img_anyres_u8(im, cfg, out, max, &n)     the n patches as uint8 [n][tile][tile][3] before rescale/normalise
 *   img_normalize(u8, n, cfg, out)           uint8 [n][tile][tile][3] -> float32 [n][3][tile][tile], HF float32 math
 *   img_preprocess(im, cfg, out, max, &n)    img_anyres_u8 + img_normalize: pixel_values of one image
 *
 * `max` is the capacity of `out` in patches (anyres_num_patches() tells the exact count).
 */
#ifndef ORPO_DATA_IMAGE_H
#define ORPO_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "data/anyres.h"

/* Largest accepted image, in pixels: Pillow's DecompressionBombError threshold (2 * 89478485). */
#define IMG_MAX_PIXELS 178956970LL

typedef struct {
    int w, h;    /* width, height in pixels */
    uint8_t *px; /* h * w * 3 bytes, row-major RGB (malloc'ed) */
} img_rgb;

typedef struct {
    anyres_config grid; /* tile size, patch size, grid pinpoints */
    float mean[3];      /* image_mean (float32, as numpy casts it) */
    float std[3];       /* image_std */
    double rescale;     /* rescale_factor (1/255) */
} img_config;

/* why img_decode refused the bytes */
enum {
    IMG_FAIL_NONE = 0,
    IMG_FAIL_EMPTY,     /* 0 bytes */
    IMG_FAIL_FORMAT,    /* neither the JPEG nor the PNG signature */
    IMG_FAIL_TRUNCATED, /* the bytes end before the end of the image (PNG IEND, JPEG EOI) */
    IMG_FAIL_CORRUPT,   /* PNG CRC / chunk order, JPEG markers and segment lengths */
    IMG_FAIL_SIZE,      /* 0 pixels or more than IMG_MAX_PIXELS */
    IMG_FAIL_DECODE,    /* the container is fine, the decoder (libjpeg, stb_image) refused the data */
    IMG_FAIL_N
};

void img_config_llava16(img_config *cfg);
int img_decode(const void *buf, size_t len, const char *src, long index, img_rgb *out);
const char *img_jpeg_backend(void);
int img_last_failure(void);
const char *img_failure_name(int kind);
void img_free(img_rgb *im);
int img_resize(const img_rgb *in, int out_w, int out_h, img_rgb *out);
int img_anyres_u8(const img_rgb *im, const img_config *cfg, uint8_t *out, int max_patches, int *n_patches);
void img_normalize(const uint8_t *u8, int n_patches, const img_config *cfg, float *out);
int img_preprocess(const img_rgb *im, const img_config *cfg, float *out, int max_patches, int *n_patches);

#endif
