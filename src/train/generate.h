/* generate — answers of the model (base + the trainer's current adapters) to prompts with images, decoded by
 * lt_generate (KV cache, greedy or sampled from the seed). Prompts use the training chat template (data/template.h):
 * the prompt ids are what the loader gives as a pair's prefix.
 *
 *   gen_pairs(t, pairs, n, streams, g, answers, ntok)   answers to up to micro_batch_pairs loader pairs at once;
 *                                 answers[i] malloc'ed text without </s>, ntok[i] generated ids (with </s> if reached)
 *   gen_split(t, split, max_pairs, g, on, ctx)          every pair of a split of data.h5 (DS_TRAIN or DS_VAL), in
 *                                 file order and batches of micro_batch_pairs; on(ctx, &answer) per pair
 *   gen_image(t, im, question, g, &answer, &ntok)       one image + question
 *   gen_text(t, ids, n)           ids as text without <image> and </s> ids (malloc'ed)
 * g->eos is set to the model's </s>. The sampling stream of a data pair is its index in data.h5, so its answer is
 * the same in any batch.
 */
#ifndef ORPO_GENERATE_H
#define ORPO_GENERATE_H

#include <stdint.h>

#include "data/image.h"
#include "data/loader.h"
#include "model/llava_train.h"
#include "train/trainer.h"

typedef struct gen_answer {
    int64_t index;                /* pair index in data.h5 */
    int64_t image;                /* image index in data.h5 (/image_offsets) */
    const char *prompt, *answer, *chosen, *rejected;
    int tokens;                   /* generated ids */
} gen_answer;

int gen_pairs(trainer *t, const ldr_pair *pairs, int n, const lt_gen_opts *g, char **answers, int *ntok);
int gen_split(trainer *t, int split, int64_t max_pairs, const lt_gen_opts *g,
              int (*on)(void *ctx, const gen_answer *a), void *ctx);
int gen_image(trainer *t, const img_rgb *im, const char *question, const lt_gen_opts *g, char **answer, int *ntok);
char *gen_text(trainer *t, const int32_t *ids, int n);

#endif
