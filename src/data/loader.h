/* loader — micro-batches of preference pairs from data.h5 for one split, prefetched by a background thread.
 *
 * At open: data.h5 is checked against the model (tokenizer hash, <image> id, vocab, image config; ERR_DATA
 * naming both hashes) and every buffer is sized from the largest pair of the split (tokens with the image
 * expanded, anyres patches, encoded image bytes): two batch slots (double buffer), nothing allocated per batch
 * by the loader itself (image decoding and resizing in src/data/image.c use their own temporary buffers).
 *
 * Order: epoch e visits the split's pairs in the permutation rng_permutation(seed, e, n) (or in file order
 * with shuffle off). A batch holds up to batch_pairs pairs and never spans two epochs (the last batch of an
 * epoch may be smaller). The cursor (epoch, pos) names the next pair; ldr_tell after a batch is what a
 * checkpoint stores, and ldr_seek to it gives exactly the batches an uninterrupted run would have seen.
 *
 * Per pair: prefix ids with the <image> placeholder expanded to n_image_tokens copies starting at image_pos,
 * the chosen and rejected answer ids (every one a training target; they end with </s>), the preprocessed
 * pixel tensor float32 [n_patches][3][tile][tile] (img_decode + img_preprocess, base image first) and the
 * original image size. Damaged data found while reading (bytes that do not decode, a size that differs from
 * the stored one, token ids out of range, a misplaced <image>) is ERR_DATA naming data.h5, the pair index
 * and its provenance; the loader stops at the first error and repeats it.
 *
 * Data parallel (shard_pairs > 0): pair j of a batch belongs to shard (j / shard_pairs) % nshards, i.e. the
 * batch is cut into micro-batches of shard_pairs dealt to the ranks in turn; only the pairs of o.shard are read
 * and decoded, the others come with their index and lengths only (prefix, chosen, rejected and pixels NULL), so
 * that every rank knows the whole batch's sizes and holds the data of its own micro-batches.
 *
 *   ldr_opts_default(&o)            train split, 1 pair per batch, seed 42, shuffle on, prefetch on, no shards
 *   ldr_open(data_h5, &model, &o, &l)   open; the model reference comes from mh5_data_ref (or the trainer)
 *   ldr_next(l, &batch)             the next micro-batch; valid until the next ldr_next / ldr_seek / ldr_close
 *   ldr_tell(l)                     the cursor after the last batch returned (the open/seek cursor before)
 *   ldr_seek(l, cursor)             continue from a cursor (ERR_ARGS when pos is beyond the split)
 *   ldr_num_pairs(l)                pairs in the split
 *   ldr_buffer_bytes(l)             bytes of the batch buffers (both slots)
 *   ldr_close(l)                    stop the thread and free everything (NULL is fine)
 */
#ifndef ORPO_LOADER_H
#define ORPO_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/image.h"

typedef struct ldr ldr;

typedef struct ldr_opts {
    int split;          /* DS_TRAIN or DS_VAL */
    int batch_pairs;    /* pairs per micro-batch (>= 1) */
    uint64_t seed;      /* shuffle seed */
    int shuffle;        /* 1: a permutation per epoch; 0: file order */
    int prefetch;       /* 1: a background thread fills the next batch; 0: fill inside ldr_next */
    int shard_pairs;    /* 0: every pair is read; else pairs per micro-batch dealt to the shards in turn */
    int nshards, shard; /* how many shards (ranks) and which one this loader reads */
} ldr_opts;

typedef struct ldr_cursor {
    int64_t epoch, pos; /* pos: index of the next pair in the epoch's order */
} ldr_cursor;

typedef struct ldr_pair {
    int64_t index;                 /* pair index in data.h5 */
    const int32_t *prefix;         /* expanded prefix ids */
    int32_t prefix_len;
    int32_t image_pos, n_image_tokens; /* prefix[image_pos .. image_pos + n_image_tokens) are <image> */
    const int32_t *chosen, *rejected;
    int32_t chosen_len, rejected_len;
    const float *pixels;           /* [n_patches][3][tile][tile] */
    int n_patches;
    int height, width;             /* original image size */
} ldr_pair;

typedef struct ldr_batch {
    int n;                         /* pairs in this batch */
    const ldr_pair *pairs;
    ldr_cursor start, next;        /* cursor of the first pair; cursor after the batch */
} ldr_batch;

void ldr_opts_default(ldr_opts *o);
int ldr_open(const char *data_h5, const ds_model_ref *model, const ldr_opts *o, ldr **out);
int ldr_next(ldr *l, const ldr_batch **batch);
ldr_cursor ldr_tell(const ldr *l);
int ldr_seek(ldr *l, ldr_cursor c);
int64_t ldr_num_pairs(const ldr *l);
size_t ldr_buffer_bytes(const ldr *l);
void ldr_close(ldr *l);

#endif
