/* model_h5 — model.h5: a LLaVA-NeXT checkpoint imported from a HuggingFace directory, with the decoder
 * linears quantized to NF4 (bitsandbytes layout) or kept bf16/fp32. Layout in docs/formats.md.
 *
 *   mh5_opts_default(&o)               quant nf4, scope decoder, flavor cuda
 *   mh5_import(hf_dir, out_path, &o)   stream tensor by tensor (one shard mapped + one tensor in memory),
 *                                      write through the atomic writer; on any error nothing is left at
 *                                      out_path (an existing file there is untouched). ERR_DATA names the
 *                                      tensor, shard or config key.
 *   mh5_load(path, &m)                 model.h5 -> llava_model for the CPU reference (fp32 arena; NF4
 *                                      linears stay packed and are dequantized per layer by lin_f32)
 *   mh5_read_config(path, &cfg)        only the configuration (no weights): format/version checked
 *   mh5_data_ref(path, &ref, &tok)     what data import and the loader need from a model: tokenizer (tokenizer.json
 *                                      preferred, else tokenizer.model + <image>/<pad>), its hash, vocab, <image> id,
 *                                      image config; ERR_DATA when the tokenizer does not fit the model
 *   mh5_read_blob(path, name, &buf, &n) a stored source file (e.g. "source/tokenizer.json"), malloc'ed;
 *                                      ERR_DATA when model.h5 has no such file
 */
#ifndef ORPO_MODEL_H5_H
#define ORPO_MODEL_H5_H

#include <stddef.h>

#include "data/dataset.h"
#include "data/tok.h"
#include "model/llava_params.h"

#define MH5_FORMAT "orpo-hpc/model"
#define MH5_VERSION 1

enum { MH5_QUANT_NF4 = 0, MH5_QUANT_BF16 = 1, MH5_QUANT_FP32 = 2 };
enum { MH5_SCOPE_DECODER = 0, MH5_SCOPE_ALL_LINEAR = 1 };

typedef struct mh5_opts {
    int quant;       /* MH5_QUANT_* */
    int scope;       /* MH5_SCOPE_*: which linears become NF4 */
    int nf4_flavor;  /* NF4_FLAVOR_CUDA (bitsandbytes on a GPU, default) or NF4_FLAVOR_CPU */
    int progress;    /* draw a progress line */
} mh5_opts;

void mh5_opts_default(mh5_opts *o);
int mh5_import(const char *hf_dir, const char *out_path, const mh5_opts *o);
int mh5_load(const char *path, llava_model *m);
int mh5_read_config(const char *path, llava_config *cfg);
int mh5_data_ref(const char *path, ds_model_ref *ref, tok **tok_out);
int mh5_read_blob(const char *path, const char *name, char **buf, size_t *n);

#endif
