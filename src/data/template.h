/* template — the llava-v1.6-mistral chat template, on token ids, for one prompt/answer pair.
 *
 * Text (spec section 8, HF LlavaNextProcessor):
 *     <s> "[INST] <image>\n" + question + " [/INST]" + " " + answer + "</s>"
 * (no "<image>\n" when n_image is 0). The text is tokenized with the tokenizer's own rules (special tokens split
 * out, each segment with its dummy "▁"), then the single <image> id is expanded to n_image copies, which is what
 * the processor's text expansion yields. The answer starts where the ids of the prompt alone stop matching the ids
 * of the whole text (TRL's rule, in case the tokenizer merges across the boundary); label[i] = 1 for the answer
 * tokens including </s>, 0 for BOS, the prompt and the image tokens.
 *
 *   tpl_encode(t, question, answer, n_image, &seq)   build ids + labels; ERR_ARGS if a text holds "<image>"
 *   tpl_free(&seq)                                   release
 */
#ifndef ORPO_TEMPLATE_H
#define ORPO_TEMPLATE_H

#include "data/tok.h"

#include <stdint.h>

typedef struct tpl_seq {
    tok_ids ids;
    uint8_t *label;      /* ids.n flags: 1 = answer token (a training target) */
    size_t answer_start; /* index of the first answer token */
    size_t image_start;  /* index of the first image token (== ids.n when n_image is 0) */
} tpl_seq;

int tpl_encode(const tok *t, const char *question, const char *answer, int32_t n_image, tpl_seq *seq);
void tpl_free(tpl_seq *seq);

#endif
