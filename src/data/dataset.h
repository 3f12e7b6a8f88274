/* dataset — data.h5: preference pairs as flat token and image-byte arrays with a compound pairs table.
 *
 * Layout (docs/data.md, docs/formats.md "data.h5"): root attributes format = "orpo-hpc/data",
 * format_version = 1, the tokenizer hash and image configuration of the model it was made for, the
 * import settings and the skip counts; datasets
 *   /pairs          compound [n_pairs]  (ds_pair: token offsets/lengths, image index, size, split, provenance)
 *   /tokens         int32 [n_tokens]    per pair: prefix (ONE <image> placeholder id at image_pos), chosen, rejected
 *   /image_bytes    uint8 [n_bytes]     the original encoded images, concatenated
 *   /image_offsets  int64 [n_images+1]  image i is image_bytes[image_offsets[i] : image_offsets[i+1]]
 *   /sources        string [n_sources]  the input files, as given on the command line
 * Everything is chunked with an unlimited first dimension and written in chunks while importing.
 *
 * Model reference (what a data set was made for; mh5_data_ref builds one from a model.h5):
 *   ds_check_model(meta, ref, data_path)      ERR_DATA naming both hashes / values on a mismatch
 *
 * Writer (memory bounded: pairs, tokens and bytes are buffered up to a few MiB and appended):
 *   ds_create(final_path, &meta, &w)          open a temporary next to final_path (atomic writer)
 *   ds_add_source(w, name)                    register an input file; returns its index (or -1 on error)
 *   ds_add_pair(w, &rec, prefix, chosen, rejected, img, img_len)   append one pair (offsets and rec.image
 *                                             are filled in); an image equal to the previous one is stored once
 *   ds_finish(w, &meta)                       fill in the stored counts, write the attributes, close, fsync,
 *                                             rename; frees w (also on failure)
 *   ds_abort(w)                               close and remove the temporary; frees w (NULL is fine)
 *
 * Reader:
 *   ds_open(path, &d)                         check the format, read attributes, the pairs table and the image
 *                                             offsets into memory and validate every pair's ranges (ERR_DATA
 *                                             naming the pair and its provenance)
 *   ds_close(d)
 *   ds_meta_of(d) / ds_num_pairs(d) / ds_pair_at(d, i) / ds_source(d, i) / ds_path(d)
 *   ds_image_size(d, image)                   bytes of an encoded image
 *   ds_read_tokens(d, off, n, out)            n token ids from /tokens
 *   ds_read_image(d, image, out)              the encoded bytes of one image (ds_image_size bytes)
 *   ds_describe_pair(d, i, buf, cap)          "pair 12 (file.parquet row group 0 row 12)" for messages
 *   ds_skip_name(reason)                      "image_corrupt", ...
 */
#ifndef ORPO_DATASET_H
#define ORPO_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/anyres.h"

#define DS_FORMAT "orpo-hpc/data"
#define DS_VERSION 1
#define DS_RNG_SPLIT 17 /* rng_key domain of the train/val split (RNG_USER + 1) */

enum { DS_TRAIN = 0, DS_VAL = 1 };

/* why a source row was not imported (counted, reported, stored as attributes skipped_<name>) */
enum {
    DS_SKIP_IMAGE_NULL = 0,   /* the image (or its bytes) is null */
    DS_SKIP_IMAGE_MISSING,    /* JSONL: the image file does not exist or cannot be read */
    DS_SKIP_IMAGE_CORRUPT,    /* the bytes do not decode as JPEG/PNG */
    DS_SKIP_QUESTION_EMPTY,   /* question null, empty or only white space */
    DS_SKIP_ANSWER_EMPTY,     /* chosen or rejected null, empty or only white space */
    DS_SKIP_SAME_ANSWERS,     /* chosen == rejected */
    DS_SKIP_TOO_LONG,         /* prefix (image expanded) + longer answer > max_tokens */
    DS_SKIP_IMAGE_TAG,        /* the text contains "<image>" */
    DS_SKIP_BOUNDARY,         /* the tokenizer merged across the prompt/answer boundary differently */
    DS_SKIP_MALFORMED,        /* JSONL: not a JSON object with the four string fields */
    DS_SKIP_N
};

/* One row of /pairs. Token ranges index /tokens; the prefix holds exactly one <image> id at image_pos,
 * which stands for n_image_tokens ids (the loader expands it). Answers end with </s>; every answer token
 * is a training target. */
typedef struct ds_pair {
    int64_t prefix_off, chosen_off, rejected_off; /* offsets into /tokens */
    int64_t image;         /* index into /image_offsets */
    int64_t source_row;    /* Parquet: row within the file (0-based); JSONL: line number (1-based) */
    int32_t prefix_len, chosen_len, rejected_len;
    int32_t image_pos;     /* index of the <image> placeholder inside the prefix */
    int32_t height, width; /* original image size in pixels */
    int32_t n_image_tokens; /* anyres_num_image_tokens(height, width) under the model's image config */
    int32_t source_file;   /* index into /sources */
    int32_t source_group;  /* Parquet row group, -1 for JSONL */
    uint8_t split;         /* DS_TRAIN or DS_VAL */
} ds_pair;

/* What a data set was made for and how. */
typedef struct ds_model_ref {
    uint64_t tok_hash;
    char tok_kind[32];
    int32_t vocab;        /* model vocab_size: every token id is below it */
    int32_t image_token;  /* <image> id */
    int32_t bos, eos;
    anyres_config anyres; /* tile, patch, pinpoints */
} ds_model_ref;

typedef struct ds_meta {
    ds_model_ref model;
    char model_path[1024];   /* informational */
    /* import settings */
    uint64_t seed;
    double val_fraction;
    int64_t max_tokens, max_pairs;
    /* counts (filled by the importer; read back by ds_open) */
    int64_t rows_seen, n_pairs, n_train, n_val, n_images, n_tokens, n_image_bytes;
    int64_t skipped[DS_SKIP_N];
    int64_t max_prefix_len, max_answer_len; /* unexpanded prefix ids; longer answer */
    int64_t max_n_image_tokens;
} ds_meta;

typedef struct ds_writer ds_writer;
typedef struct ds_file ds_file;

int ds_check_model(const ds_meta *meta, const ds_model_ref *ref, const char *data_path);

int ds_create(const char *final_path, const ds_meta *meta, ds_writer **out);
int ds_add_source(ds_writer *w, const char *name);
int ds_add_pair(ds_writer *w, ds_pair *rec, const int32_t *prefix, const int32_t *chosen, const int32_t *rejected,
                const uint8_t *img, size_t img_len);
int ds_finish(ds_writer *w, ds_meta *meta);
void ds_abort(ds_writer *w);

int ds_open(const char *path, ds_file **out);
void ds_close(ds_file *d);
const ds_meta *ds_meta_of(const ds_file *d);
int64_t ds_num_pairs(const ds_file *d);
const ds_pair *ds_pair_at(const ds_file *d, int64_t i);
const char *ds_source(const ds_file *d, int64_t i);
const char *ds_path(const ds_file *d);
int64_t ds_image_size(const ds_file *d, int64_t image);
int ds_read_tokens(ds_file *d, int64_t off, int64_t n, int32_t *out);
int ds_read_image(ds_file *d, int64_t image, uint8_t *out);
const char *ds_describe_pair(const ds_file *d, int64_t i, char *buf, size_t cap);
const char *ds_skip_name(int reason);

#endif
