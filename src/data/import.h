/* import — RLAIF-V Parquet files or JSONL + an image directory -> data.h5 (docs/data.md).
 *
 * Each source row is checked (image present and decodable, texts non-empty, answers different), tokenized
 * with the model's tokenizer and chat template (tpl_encode), and written through ds_ (one pair per row, the
 * prompt ids once, the original encoded image bytes). Rows that fail a check are skipped and counted by
 * reason (DS_SKIP_*), never fatal. Fatal: unreadable or malformed input files (ERR_DATA = exit 3), missing
 * files (ERR_IO = exit 4), bad options (ERR_ARGS = exit 2); on any error nothing is left at the output.
 * Streaming: one Parquet row group (or one JSONL line) and a few MiB of output buffers in memory.
 *
 * The data layer never reads a model file itself: the caller gets the model's view (tokenizer, vocab, <image> id,
 * image config) from mh5_data_ref (src/model/model_h5.h) and passes it in.
 *
 *   imp_opts_default(&o)                    val_fraction 0.1, seed 42, no limits
 *   imp_check_tokenizer(label, vocab, image_token, tok)   ERR_DATA unless every tokenizer id < vocab and
 *                                           the tokenizer's <image> id is the model's image_token_index
 *   imp_run(&o, &ref, tok, &report)         import; fills the report (counts, skipped examples, time)
 *   imp_report_print(&report)               the end-of-import summary on stderr (log_info), with image_corrupt
 *                                           split by the decoder's reason
 *   imp_skip_summary(&report, buf, cap)     "image_null 2, image_corrupt 3 (truncated 2, corrupt 1)"
 *
 * Each skipped image and malformed JSONL line is also said as it happens (log_warn, the first 20; then
 * ORPO_LOG=debug), with the decoder's message or the missing field / the parse position (line:column).
 */
#ifndef ORPO_IMPORT_H
#define ORPO_IMPORT_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/tok.h"

#define IMP_EXAMPLES 5 /* provenance of the first few skipped rows per reason, for the report */

typedef struct imp_opts {
    const char *out;              /* data.h5 */
    const char *const *parquet;   /* Parquet files, imported in the order given */
    int n_parquet;
    const char *jsonl;            /* or one JSONL file ... */
    const char *images_dir;       /* ... with image paths relative to this directory */
    const char *model_path;       /* recorded in data.h5 (informational) */
    int64_t max_pairs;            /* stop after this many pairs (0 = all) */
    int64_t max_tokens;           /* skip a pair whose prefix (image expanded) + longer answer exceeds it (0 = no limit) */
    double val_fraction;          /* probability of a pair being put into the val split */
    uint64_t seed;                /* split seed */
    int progress;                 /* draw a progress bar */
} imp_opts;

typedef struct imp_report {
    ds_meta meta;                               /* counts as stored in data.h5 */
    char examples[DS_SKIP_N][IMP_EXAMPLES][320]; /* "file row group 0 row 3 (truncated)", "file line 7 (field
                                                    'chosen' is missing)": the place, and why when known */
    int64_t image_fail[IMG_FAIL_N];             /* image_corrupt rows by the decoder's reason (IMG_FAIL_*) */
    int64_t n_warned;                           /* skipped rows said one by one so far */
    double seconds;
} imp_report;

void imp_opts_default(imp_opts *o);
int imp_check_tokenizer(const char *label, int32_t vocab, int32_t image_token, const tok *t);
int imp_run(const imp_opts *o, const ds_model_ref *ref, const tok *t, imp_report *rep);
void imp_report_print(const imp_report *rep);
size_t imp_skip_summary(const imp_report *rep, char *buf, size_t cap);

#endif
