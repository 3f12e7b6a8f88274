/* job_export — a job's trainable state to and from the ecosystem's formats (docs/export.md):
 * PEFT adapters (adapter_config.json + adapter_model.safetensors, as PEFT 0.21's save_pretrained writes them
 * for LlavaNextForConditionalGeneration) with a README.md model card, a merged HF model directory (bf16 shards),
 * and step-0 trainable state from an existing PEFT adapter (import-adapter).
 *
 *   jx_peft_name(name, layout, out, cap)  PEFT key of a trainer tensor ("lora/<module>/A" -> "...lora_A.weight")
 *   jx_target_regex(t, layout, out, cap)  the target_modules regex of a trainer's LoRA modules
 *   jx_write_peft(t, &o, dir)             write adapter_config.json and adapter_model.safetensors (and o.card
 *                                         as README.md) into dir, each file atomically; dir is created
 *   jx_read_peft(t, dir)                  read a PEFT adapter into the trainer's tensors (either key layout,
 *                                         F32/BF16/F16): rank, alpha, rsLoRA, targets, token ids and every
 *                                         shape must agree (ERR_ARGS for settings, ERR_DATA for shapes, naming
 *                                         the tensor); nothing is written into t unless all of it fits
 *   jx_write_merged(t, model, max_shard, dir)   a complete HF model directory: the base dequantized, the trainer's
 *                                         LoRA merged in (W += scale B A), the projector / token rows as trained;
 *                                         bf16 shards of at most max_shard bytes with model.safetensors.index.json
 *                                         (llava-hf names), config.json and the tokenizer/processor files of model.h5
 *   jx_open(j, &x)                        load the job's model and create its trainer (jx_close frees)
 *   jx_load_checkpoint(&x, which, path, cap, &step)   trainable tensors from a checkpoint: which = NULL or
 *                                         "latest" (newest that verifies), a step number, or a file path
 *   jx_base_model(j, out, cap)            the HF directory the job's model.h5 was imported from ("" if unknown)
 *   jx_model_card(j, ckpt, step, &text)   README.md: HF hub front matter, the job's settings, final metrics
 *   jx_write_step0(&x)                    checkpoint step 0 of job.output_dir from the trainer's tensors, with
 *                                         zero AdamW moments; refuses (ERR_ARGS) when checkpoints exist
 */
#ifndef ORPO_JOB_EXPORT_H
#define ORPO_JOB_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "job/job.h"
#include "model/llava_train.h"

enum { JX_LAYOUT_CURRENT = 0, JX_LAYOUT_LEGACY = 1 }; /* transformers >= 4.52 / < 4.52 module paths */

typedef struct jx_opts {
    int bf16;               /* tensors as BF16 (round to nearest even) instead of F32 */
    int layout;             /* JX_LAYOUT_* */
    const char *base_model; /* base_model_name_or_path */
    const char *card;       /* README.md text, or NULL for none */
} jx_opts;

typedef struct jx_job {
    const job_config *j;
    llava_model m;
    llava_trainer t;
    int have_model, have_trainer;
} jx_job;

int jx_peft_name(const char *name, int layout, char *out, size_t cap);
int jx_target_regex(const llava_trainer *t, int layout, char *out, size_t cap);
int jx_write_peft(const llava_trainer *t, const jx_opts *o, const char *dir);
int jx_read_peft(llava_trainer *t, const char *dir);
int jx_write_merged(const llava_trainer *t, const char *model_path, int64_t max_shard_bytes, const char *dir);
int jx_open(const job_config *j, jx_job *x);
void jx_close(jx_job *x);
int jx_load_checkpoint(jx_job *x, const char *which, char *path, size_t cap, int64_t *step);
void jx_base_model(const job_config *j, char *out, size_t cap);
int jx_model_card(const job_config *j, const char *ckpt, int64_t step, char **text);
int jx_write_step0(jx_job *x);

#endif
