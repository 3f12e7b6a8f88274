/* job_keys — THE table of job keys: path, type, default, range or allowed values, flags, one-line doc.
 * Everything else (loader, schema, docs table, YAML writer, hash) is derived from it. */
#include <stddef.h>
#include <string.h>

#include "job/job.h"
#include "job/job_internal.h"

#define OFF(f) offsetof(job_config, f)
#define RQ JOB_K_REQUIRED
#define RS JOB_K_RESULT
#define MIN JOB_K_HAS_MIN
#define MAX JOB_K_HAS_MAX
#define MINX (JOB_K_HAS_MIN | JOB_K_MIN_EXCL)
#define MAXX (JOB_K_HAS_MAX | JOB_K_MAX_EXCL)

static const char *const v_quant[] = {"nf4", "bf16", "fp32", NULL};
static const char *const v_qscope[] = {"decoder", "all-linear", NULL};
static const char *const v_targets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                        "down_proj", "mm_projector", "lm_head", NULL};
static const char *const v_vision[] = {"q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", NULL};
static const char *const v_sched[] = {"cosine", "constant", NULL};
static const char *const v_nll[] = {"all", "answer", NULL};
static const char *const v_full[] = {"mm_projector", NULL};
static const char *const v_groups[] = {"lora", "vision_lora", "mm_projector", "token_embeddings", NULL};
static const char *const v_device[] = {"auto", "cpu", "cuda", NULL};
static const char *const v_dp[] = {"auto", "none", "nccl", "mpi", NULL};
static const char *const v_prec[] = {"auto", "fp32", "bf16", NULL};
static const char *const v_attn[] = {"auto", "cudnn", "kernels", NULL}; /* backend/attn_fused.h AFZ_* order */

/* clang-format off */
static const job_key KEYS[] = {
  /* path, type, flags, default, min, max, values, prefix, prefix_values, offset, doc */
  {"job.name", JOB_T_STR, RQ, NULL, 0, 0, NULL, NULL, NULL, OFF(job.name),
   "name of the run: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
  {"job.output_dir", JOB_T_PATH, 0, "runs/<job.name>", 0, 0, NULL, NULL, NULL, OFF(job.output_dir),
   "directory of checkpoints, metrics.h5 and the frozen config; created when the job starts"},

  {"model.path", JOB_T_PATH, RQ | RS | JOB_K_FILE, NULL, 0, 0, NULL, NULL, NULL, OFF(model.path),
   "model HDF5 file written by orpo-hpc import-model (or make-demo); `plan` also takes a HuggingFace model "
   "directory or its config.json"},
  {"model.quantization", JOB_T_ENUM, RS, "nf4", 0, 0, v_quant, NULL, NULL, OFF(model.quantization),
   "precision of the frozen base weights: nf4 (4-bit NormalFloat, double-quantised: QLoRA), bf16 or fp32"},
  {"model.quant_scope", JOB_T_ENUM, RS, "decoder", 0, 0, v_qscope, NULL, NULL, OFF(model.quant_scope),
   "which linear layers use model.quantization: the language decoder only, or also vision tower and projector"},

  {"lora.rank", JOB_T_INT, RS | MIN | MAX, "8", 1, 1024, NULL, NULL, NULL, OFF(lora.rank),
   "LoRA rank r of every adapter"},
  {"lora.alpha", JOB_T_FLOAT, RS | MINX | MAX, "16", 0, 1e6, NULL, NULL, NULL, OFF(lora.alpha),
   "LoRA alpha; the update is scaled by alpha/r (alpha/sqrt(r) with lora.use_rslora)"},
  {"lora.dropout", JOB_T_FLOAT, RS | MIN | MAXX, "0.05", 0, 1, NULL, NULL, NULL, OFF(lora.dropout),
   "dropout probability on the input of every LoRA adapter during training"},
  {"lora.targets", JOB_T_LIST, RS | MIN, "q_proj,k_proj,v_proj,o_proj", 1, 0, v_targets, "vision:", v_vision,
   OFF(lora.targets),
   "modules that get LoRA adapters: decoder projections, mm_projector (both projector linears), lm_head, "
   "and vision:<name> for the vision tower"},
  {"lora.train_new_token_embeddings", JOB_T_BOOL, RS, "false", 0, 0, NULL, NULL, NULL,
   OFF(lora.train_new_token_embeddings),
   "also train the embedding and lm_head rows of the tokens added at import (<image>, [INST], [/INST])"},
  {"lora.use_rslora", JOB_T_BOOL, RS, "false", 0, 0, NULL, NULL, NULL, OFF(lora.use_rslora),
   "rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r"},
  {"lora.vision_layers", JOB_T_INT, RS | MIN | MAX, "0", 0, 1024, NULL, NULL, NULL, OFF(lora.vision_layers),
   "vision:* targets apply to the last N vision tower layers that feed the projector; 0 = all of them"},

  {"data.path", JOB_T_PATH, RQ | RS | JOB_K_FILE, NULL, 0, 0, NULL, NULL, NULL, OFF(data.path),
   "preference data HDF5 file written by orpo-hpc import-data (or make-demo)"},
  {"data.val_fraction", JOB_T_FLOAT, RS | MIN | MAXX, "0.1", 0, 1, NULL, NULL, NULL, OFF(data.val_fraction),
   "fraction held out for validation by import-data --val-fraction: the split is made at import and stored in "
   "data.h5; must equal data.h5's (checked at start)"},
  {"data.max_pairs", JOB_T_INT, RS | MIN, "0", 0, 0, NULL, NULL, NULL, OFF(data.max_pairs),
   "cut each epoch to this many training pairs, taken in the epoch's shuffled order (train.seed); the validation "
   "split is not changed; 0 = all (to import fewer pairs: import-data --max-pairs)"},
  {"data.seed", JOB_T_INT, RS | MIN, "42", 0, 0, NULL, NULL, NULL, OFF(data.seed),
   "seed of the train/validation split made by import-data --seed; must equal data.h5's (checked at start)"},
  {"data.max_tokens", JOB_T_INT, RS | MIN, "0", 0, 0, NULL, NULL, NULL, OFF(data.max_tokens),
   "length limit import-data --max-tokens applied (pairs longer than it were skipped and counted); must equal "
   "data.h5's (checked at start); 0 = no limit"},

  {"train.epochs", JOB_T_INT, RS | MIN | MAX, "1", 1, 100000, NULL, NULL, NULL, OFF(train.epochs),
   "passes over the training split; the learning-rate schedule spans all of them"},
  {"train.max_steps", JOB_T_INT, MIN, "0", 0, 0, NULL, NULL, NULL, OFF(train.max_steps),
   "stop after this many optimizer steps (the schedule is not shortened); 0 = run all epochs"},
  {"train.micro_batch_pairs", JOB_T_INT, RS | MIN | MAX, "2", 1, 4096, NULL, NULL, NULL,
   OFF(train.micro_batch_pairs), "preference pairs per forward/backward pass (per rank)"},
  {"train.grad_accum", JOB_T_INT, RS | MIN | MAX, "1", 1, 65536, NULL, NULL, NULL, OFF(train.grad_accum),
   "micro-batches per rank whose gradients are summed into one optimizer step (of ranks x "
   "micro_batch_pairs x grad_accum pairs)"},
  {"train.lr", JOB_T_FLOAT, RS | MINX | MAX, "2e-4", 0, 1, NULL, NULL, NULL, OFF(train.lr),
   "peak AdamW learning rate (of every parameter group not in train.lr_groups)"},
  {"train.schedule", JOB_T_ENUM, RS, "cosine", 0, 0, v_sched, NULL, NULL, OFF(train.schedule),
   "learning-rate schedule after warm-up: cosine decay to 0 over all epochs, or constant"},
  {"train.warmup_steps", JOB_T_INT, RS | MIN, "0", 0, 0, NULL, NULL, NULL, OFF(train.warmup_steps),
   "optimizer steps of linear warm-up from 0 to the peak learning rate"},
  {"train.weight_decay", JOB_T_FLOAT, RS | MIN | MAX, "0", 0, 10, NULL, NULL, NULL, OFF(train.weight_decay),
   "AdamW decoupled weight decay"},
  {"train.max_grad_norm", JOB_T_FLOAT, RS | MIN | MAX, "1", 0, 1e6, NULL, NULL, NULL, OFF(train.max_grad_norm),
   "clip the global gradient norm to this value before each step; 0 = no clipping"},
  {"train.orpo_beta", JOB_T_FLOAT, RS | MIN | MAX, "0.1", 0, 1000, NULL, NULL, NULL, OFF(train.orpo_beta),
   "weight beta (lambda in the paper) of the odds-ratio term: loss = NLL - beta * logsigmoid(log-odds)"},
  {"train.gradient_checkpointing", JOB_T_BOOL, 0, "true", 0, 0, NULL, NULL, NULL,
   OFF(train.gradient_checkpointing),
   "keep only each decoder layer's input and recompute the layer in backward (less memory, same result)"},
  {"train.seed", JOB_T_INT, RS | MIN, "42", 0, 0, NULL, NULL, NULL, OFF(train.seed),
   "seed of LoRA initialisation, dropout and the shuffling of each epoch"},
  {"train.nll", JOB_T_ENUM, RS, "all", 0, 0, v_nll, NULL, NULL, OFF(train.nll),
   "tokens of the chosen sequence in the NLL term: all = prompt and answer (as TRL), answer = answer only"},
  {"train.full_modules", JOB_T_LIST, RS | MIN, "", 0, 0, v_full, NULL, NULL, OFF(train.full_modules),
   "modules trained in full (all weights, no adapter); must not also be in lora.targets"},
  {"train.lr_groups", JOB_T_MAP, RS | MINX | MAX, "", 0, 1, v_groups, NULL, NULL, OFF(train.lr_groups),
   "peak learning rate per parameter group (lora, vision_lora, mm_projector, token_embeddings); "
   "groups not named use train.lr"},

  {"checkpoint.every_steps", JOB_T_INT, MIN, "500", 0, 0, NULL, NULL, NULL, OFF(checkpoint.every_steps),
   "write a checkpoint every N optimizer steps (and always at the end and on SIGTERM/SIGUSR1); 0 = only then"},
  {"checkpoint.keep_last", JOB_T_INT, MIN | MAX, "3", 1, 100000, NULL, NULL, NULL, OFF(checkpoint.keep_last),
   "keep the newest N checkpoints and delete older ones"},

  {"eval.every_steps", JOB_T_INT, MIN, "500", 0, 0, NULL, NULL, NULL, OFF(eval.every_steps),
   "evaluate on the validation split every N optimizer steps (and at the end); 0 = only at the end"},
  {"eval.max_pairs", JOB_T_INT, MIN, "200", 0, 0, NULL, NULL, NULL, OFF(eval.max_pairs),
   "validation pairs per evaluation (always the same ones); 0 = the whole validation split"},
  {"eval.samples", JOB_T_INT, MIN | MAX, "2", 0, 1000, NULL, NULL, NULL, OFF(eval.samples),
   "answers generated from validation prompts at each evaluation and stored in metrics.h5"},

  {"runtime.device", JOB_T_ENUM, 0, "auto", 0, 0, v_device, NULL, NULL, OFF(runtime.device),
   "where to compute: cuda, cpu, or auto (cuda when this binary has CUDA and a GPU is visible)"},
  {"runtime.gpu_memory_gb", JOB_T_FLOAT, MIN | MAX, "0", 0, 1e6, NULL, NULL, NULL, OFF(runtime.gpu_memory_gb),
   "GPU memory budget of the planner in GiB; 0 = what the GPU reports as free"},
  {"runtime.precision", JOB_T_ENUM, 0, "auto", 0, 0, v_prec, NULL, NULL, OFF(runtime.precision),
   "activations and dequantized weights: fp32, or bf16 (fp32 accumulation; LoRA masters, gradients and AdamW "
   "moments stay fp32); auto = fp32 on the CPU, bf16 on CUDA"},
  {"runtime.attention", JOB_T_ENUM, 0, "auto", 0, 0, v_attn, NULL, NULL, OFF(runtime.attention),
   "the attention of a CUDA run: cudnn (cuDNN's fused attention; refused when this binary has none or its self-test "
   "fails on the GPU), kernels (the materialised attention kernels, always there), auto = cudnn when built and its "
   "self-test passes, else kernels (one line says why); calls cuDNN cannot take run the kernels; the CPU ignores it"},
  {"runtime.vision_cache", JOB_T_PATH, 0, NULL, 0, 0, NULL, NULL, NULL, OFF(runtime.vision_cache),
   "HDF5 file of the frozen vision tower's features of every pair of data.h5 (docs/formats.md), built by the first "
   "train that names a missing file, then read instead of running the tower (same result); refused when built "
   "for another model, data or runtime.precision; eval and generate run the tower; not set = run the tower "
   "each step"},
  {"runtime.threads", JOB_T_INT, MIN | MAX, "0", 0, 4096, NULL, NULL, NULL, OFF(runtime.threads),
   "CPU threads for compute and data loading; 0 = all cores available to the process"},
  {"runtime.data_parallel", JOB_T_ENUM, 0, "auto", 0, 0, v_dp, NULL, NULL, OFF(runtime.data_parallel),
   "data parallelism: auto (nccl on GPU, mpi on CPU, when Slurm/env start more than one rank), none, nccl, mpi"},
  {"runtime.log_every_s", JOB_T_FLOAT, MIN | MAX, "10", 0, 86400, NULL, NULL, NULL, OFF(runtime.log_every_s),
   "seconds between the trainer's progress lines (besides every checkpoint, validation and warning); 0 = every step"},
  {"runtime.dist_timeout_s", JOB_T_FLOAT, MINX | MAX, "300", 0, 86400, NULL, NULL, NULL,
   OFF(runtime.dist_timeout_s),
   "data parallel: seconds a rank waits for the others at a collective before it fails (exit 4, naming the rank)"},
};
/* clang-format on */

_Static_assert(sizeof KEYS / sizeof KEYS[0] == JOB_NKEYS, "JOB_NKEYS must equal the number of keys");

static const job_section SECTIONS[] = {
    {"job", "the run: its name and output directory"},
    {"model", "the frozen base model"},
    {"lora", "the trained adapters"},
    {"data", "the preference pairs"},
    {"train", "optimisation and the ORPO loss"},
    {"checkpoint", "checkpoints in job.output_dir/checkpoints"},
    {"eval", "validation during training"},
    {"runtime", "where and how to compute (never changes the result)"},
};

/* Names people bring from HF / TRL / PEFT configs, mapped to our key (for "did you mean"). */
static const char *const ALIASES[][2] = {
    {"learning_rate", "train.lr"},
    {"lr_scheduler_type", "train.schedule"},
    {"num_train_epochs", "train.epochs"},
    {"per_device_train_batch_size", "train.micro_batch_pairs"},
    {"batch_size", "train.micro_batch_pairs"},
    {"gradient_accumulation_steps", "train.grad_accum"},
    {"beta", "train.orpo_beta"},
    {"warmup", "train.warmup_steps"},
    {"r", "lora.rank"},
    {"lora_r", "lora.rank"},
    {"lora_alpha", "lora.alpha"},
    {"lora_dropout", "lora.dropout"},
    {"target_modules", "lora.targets"},
    {"save_steps", "checkpoint.every_steps"},
    {"eval_steps", "eval.every_steps"},
    {"save_total_limit", "checkpoint.keep_last"},
    {NULL, NULL},
};

const job_key *job_keys(int *n) {
    if (n) *n = JOB_NKEYS;
    return KEYS;
}

const job_section *job_sections(int *n) {
    if (n) *n = (int)(sizeof SECTIONS / sizeof SECTIONS[0]);
    return SECTIONS;
}

int job_find_key(const char *path) {
    for (int i = 0; i < JOB_NKEYS; i++)
        if (!strcmp(KEYS[i].path, path)) return i;
    return -1;
}

int job_key_result_changing(int i) { return i >= 0 && i < JOB_NKEYS && (KEYS[i].flags & JOB_K_RESULT); }

const char *job_enum_name(int i, int v) {
    if (i < 0 || i >= JOB_NKEYS || KEYS[i].type != JOB_T_ENUM || v < 0) return NULL;
    for (int k = 0; KEYS[i].values[k]; k++)
        if (k == v) return KEYS[i].values[k];
    return NULL;
}

const char *job_alias(const char *leaf) {
    for (int i = 0; ALIASES[i][0]; i++)
        if (!strcmp(ALIASES[i][0], leaf)) return ALIASES[i][1];
    return NULL;
}

/* The key name after the section: "lora.rank" -> "rank". */
const char *job_key_leaf(const job_key *k) {
    const char *dot = strchr(k->path, '.');
    return dot ? dot + 1 : k->path;
}

/* 1 when key k lies in section sec. */
int job_key_in_section(const job_key *k, const char *sec) {
    size_t n = strlen(sec);
    return !strncmp(k->path, sec, n) && k->path[n] == '.';
}

/* Optimal string alignment distance (Damerau-Levenshtein without repeated edits), for suggestions. */
int job_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int d[65][65];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < best) best = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* Close enough to suggest: at most max(1, len/3) edits (len of the longer string). */
int job_close(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    size_t l = la > lb ? la : lb;
    int lim = (int)(l / 3);
    if (lim < 1) lim = 1;
    if (lim > 3) lim = 3;
    return job_edit_distance(a, b) <= lim;
}
