/* llava_params — the parameter list of a LLaVA-NeXT config, checkpoint name mapping, and an fp32 model
 * loaded from a HuggingFace directory (the CPU reference's way in; model.h5 import builds on it).
 *
 *   llava_canonical_name(name, out, n)   map any supported checkpoint name to the llava-hf legacy name:
 *                                        transformers 4.x (language_model.model.*, vision_tower.vision_model.*),
 *                                        transformers 5.x (model.language_model.*, model.vision_tower.*, lm_head.*,
 *                                        vision_tower.embeddings.* without vision_model), and the original
 *                                        liuhaotian layout (model.layers.*, model.mm_projector.{0,2}.*,
 *                                        model.vision_tower.vision_tower.vision_model.*); 0 when it maps
 *   llava_params_build(cfg, w, &list, &n)  every tensor the model needs: canonical name, shape, and the
 *                                        slot of llava_weights it fills (vision layers only up to v_run_layers)
 *   llava_model_load_hf(dir, &m)         config.json + *.safetensors (sharded or not) -> fp32 model;
 *                                        ERR_DATA naming the tensor on a missing tensor or a shape mismatch
 *   llava_model_free(&m)
 *   llava_model_tower_bytes(&m)          bytes of a loaded model's vision tower (fp32, its linears NF4 when the
 *                                        model stores them so): what a run with cached vision features never reads
 *   llava_model_random(cfg, nf4_decoder, seed, &m)  the model of cfg with seeded random weights, the decoder's linears
 *                                        NF4 (nf4_decoder) in model.h5's layout (llava_random.c): benchmarks of a
 *                                        shape without a checkpoint
 *   llava_model_setup(&m, &list, &n)     with m.cfg set: the layer arrays of m.w and the parameter list whose
 *                                        slots point into m.w (the loaders' first step; list is malloc'ed); an
 *                                        empty list is ERR_INTERNAL (the model freed)
 *   llava_model_arena(&m, list, n, skip) one zeroed fp32 arena (m.arena) for every parameter i with !skip[i]
 *                                        (all when skip is NULL), in list order; their slots point into it
 *   llava_match_tensor(cfg, p, t, file)  shape check of a checkpoint tensor against a parameter (ERR_DATA naming
 *                                        both); embed/lm_head of a liuhaotian checkpoint may have src_vocab rows
 *   llava_read_tensor(cfg, f, t, p, dst) the tensor as fp32 into dst[p->numel]; rows missing from a liuhaotian
 *                                        checkpoint (<image>, <pad>) are set to the mean of the source rows
 *   llava_shard_visit(cfg, path, ps, np, seen, visit, ctx)  every tensor of one safetensors file that maps to a
 *                                        parameter, shape-checked and not seen before, handed to visit(ctx, f, t, k);
 *                                        seen[k] is set after a successful visit (the loader and the importer)
 */
#ifndef ORPO_LLAVA_PARAMS_H
#define ORPO_LLAVA_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "model/llava.h"

typedef struct llava_param {
    char name[128];
    int ndim;
    int64_t shape[4];
    int64_t numel;
    const void **slot; /* where the data pointer goes */
    int is_linear;     /* a [out, in] weight of a linear layer (NF4 candidate) */
    int is_decoder;    /* belongs to the Mistral decoder layers */
} llava_param;

typedef struct llava_model {
    llava_config cfg;
    llava_weights w;
    vis_layer *vis;
    dec_layer *dec;
    float *arena;       /* every parameter, fp32, one allocation */
    size_t arena_floats;
    uint8_t *qarena;    /* NF4 packed nibbles, 8-bit absmax and absmax2 of quantized linears */
    size_t qbytes;
} llava_model;

struct st_file;
struct st_tensor;

int llava_canonical_name(const char *name, char *out, size_t n);
typedef int (*llava_visit_fn)(void *ctx, const struct st_file *f, const struct st_tensor *t, int k);
int llava_shard_visit(const llava_config *cfg, const char *path, llava_param *ps, int np, char *seen,
                      llava_visit_fn visit, void *ctx);
int llava_match_tensor(const llava_config *cfg, const llava_param *p, const struct st_tensor *t, const char *file);
int llava_read_tensor(const llava_config *cfg, const struct st_file *f, const struct st_tensor *t,
                      const llava_param *p, float *dst);
int llava_params_build(const llava_config *cfg, llava_weights *w, llava_param **list, int *n);
int llava_model_load_hf(const char *dir, llava_model *m);
void llava_model_free(llava_model *m);
size_t llava_model_tower_bytes(const llava_model *m);
int llava_model_random(const llava_config *cfg, int nf4_decoder, uint64_t seed, llava_model *m);
int llava_model_setup(llava_model *m, llava_param **list, int *n);
void llava_model_arena(llava_model *m, llava_param *list, int n, const char *skip);

#endif
