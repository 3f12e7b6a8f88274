/* anyres — LLaVA-NeXT "anyres" geometry: best pinpoint, grid, resize target, unpad, token count.
 *
 * Pure integer/double arithmetic shared by image preprocessing (src/data/image.c), the chat
 * template (how many <image> tokens an image expands to) and the model (unpad + image_newline
 * packing). Everything follows transformers 5.24 (LlavaNextImageProcessorPil, LlavaNextProcessor,
 * LlavaNextModel.pack_image_features) bit for bit, including its double-precision expressions.
 * Sizes are (height, width) like HF; pinpoints are (height, width) pairs in HF order (the
 * original liuhaotian repo reads the same list as (width, height): see docs/preprocessing.md).
 *
 *   anyres_config_llava16(cfg)                      the llava-v1.6-mistral-7b-hf values (336, 14, 5 pinpoints)
 *   anyres_config_check(cfg)                        validate tile/patch/pinpoints; ERR_ARGS with a message
 *   anyres_select(cfg, h, w, &bh, &bw)              best pinpoint (HF select_best_resolution)
 *   anyres_grid(cfg, h, w, &rows, &cols)            tile grid of the best pinpoint (rows = bh / tile)
 *   anyres_num_patches(cfg, h, w)                   1 (base image) + rows * cols, or -1 on bad input
 *   anyres_resize_target(h, w, bh, bw, &nh, &nw)    aspect-preserving size inside (bh, bw) (get_patch_output_size)
 *   anyres_unpad(h, w, ch, cw, &r0, &nr, &c0, &nc)  rows/cols of a (ch x cw) feature map kept by unpad_image
 *   anyres_num_image_tokens(cfg, h, w)              <image> tokens of one image ("default" feature strategy)
 *   anyres_trunc_round7(x)                          int(round(x, 7)) of Python, for x >= 0
 */
#ifndef ORPO_DATA_ANYRES_H
#define ORPO_DATA_ANYRES_H

#include <stdint.h>

#define ANYRES_MAX_PINPOINTS 64

typedef struct {
    int tile;        /* crop / vision tower input size in pixels (336; vision_config.image_size) */
    int patch;       /* vision patch size (14): a tile gives (tile/patch)^2 features */
    int n_pinpoints; /* entries used in pinpoints[] */
    int pinpoints[ANYRES_MAX_PINPOINTS][2]; /* (height, width), multiples of tile, in config order */
} anyres_config;

void anyres_config_llava16(anyres_config *cfg);
int anyres_config_check(const anyres_config *cfg);

int anyres_select(const anyres_config *cfg, int h, int w, int *best_h, int *best_w);
int anyres_grid(const anyres_config *cfg, int h, int w, int *rows, int *cols);
int anyres_num_patches(const anyres_config *cfg, int h, int w);
void anyres_resize_target(int h, int w, int best_h, int best_w, int *new_h, int *new_w);
void anyres_unpad(int h, int w, int cur_h, int cur_w, int *row0, int *nrows, int *col0, int *ncols);
int64_t anyres_num_image_tokens(const anyres_config *cfg, int h, int w);
int64_t anyres_trunc_round7(double x);

#endif
