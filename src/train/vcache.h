/* vcache — the vision-feature cache (runtime.vision_cache): the frozen vision tower's selected features of every
 * pair of data.h5 (train and val splits), computed once image by image (lt_vision_features) and read back instead
 * of running the tower, so a plan with the vision features from a cache (LS_VIS_CACHE) gives the same bits as the
 * tower run. Layout in docs/formats.md ("vision cache"): root attributes format "orpo-hpc/vision-cache",
 * format_version, model_hash, data_hash (content hashes, 16 hex digits), act_dtype ("f32" or "bf16"), np, dv;
 * one dataset /features/<pair index> [P * np, dv] (float32, or the committed bfloat16 type) per pair.
 *
 *   vc_open(path, lt, &src, &vc)   open the cache at path when its attributes match this model, data and activation
 *                                  dtype; build it when path does not exist (lt gets a temporary forward-only plan
 *                                  that runs the tower: re-plan lt afterwards), written atomically (temporary +
 *                                  rename: an interrupted build leaves no file at path; a kill -9's temporary is
 *                                  removed by the next vc_open). A file that does not match: ERR_DATA naming it, the
 *                                  attribute and both values (it is never overwritten). src->stop_requested stops a
 *                                  build with ERR_INTERRUPTED
 *   vc_read(vc, index, P, dst, cap) one pair's features [P * np, dv] in the activation dtype into host memory dst of
 *                                  cap bytes (ERR_DATA naming the file and the pair when missing or of another shape)
 *   vc_pairs(vc)                   pairs in the cache
 *   vc_close(vc)                   (NULL is fine)
 */
#ifndef ORPO_VCACHE_H
#define ORPO_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "model/llava_train.h"

#define VC_FORMAT "orpo-hpc/vision-cache"
#define VC_VERSION 1

typedef struct vc_source {
    const char *data_path;        /* data.h5: every pair of its train and val splits */
    const ds_model_ref *ref;      /* the loader's model reference (mh5_data_ref) */
    uint64_t model_hash, data_hash; /* content hashes of model.h5 and data.h5 (io/content_hash.h) */
    int (*stop_requested)(void);  /* nonzero: stop a build (NULL: never) */
} vc_source;

typedef struct vc_file vc_file;

int vc_open(const char *path, llava_trainer *lt, const vc_source *src, vc_file **out);
int vc_read(vc_file *vc, int64_t index, int P, void *dst, size_t cap);
int64_t vc_pairs(const vc_file *vc);
void vc_close(vc_file *vc);

#endif
