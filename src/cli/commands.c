#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "io/err.h"
#include "io/fsutil.h"
#include "io/log.h"

const cli_command cli_commands[] = {
    {"train", cmd_train, "start a training job in job.output_dir",
     "orpo-hpc train JOB.yaml [--restart] [--set key.path=value ...]\n"
     "  Starts the job; refuses when checkpoints already exist unless --restart."},
    {"resume", cmd_resume, "continue a job from its newest valid checkpoint (or start it)",
     "orpo-hpc resume JOB.yaml [--accept-changed-inputs] [--set key.path=value ...]\n"
     "  What the Slurm script runs: continues from the newest checkpoint that verifies,\n"
     "  starts fresh when there is none. Exit 75 means: interrupted, checkpointed, requeue me.\n"
     "  Refuses (exit 2) when model.h5 or data.h5 holds other content than when the checkpoint\n"
     "  was written, unless --accept-changed-inputs."},
    {"eval", cmd_eval, "validation loss, preference accuracy and metrics of a checkpoint",
     "orpo-hpc eval JOB.yaml [--checkpoint FILE] [--pairs-out FILE.h5|FILE.jsonl] [--accept-changed-inputs]\n"
     "                       [--set key.path=value ...]\n"
     "       orpo-hpc eval JOB.yaml --hallucination [--json] [--items N] [--checkpoint FILE]\n"
     "  Loads the newest valid checkpoint (or FILE) and prints validation loss, accuracy and log-probs over the\n"
     "  val split (the train split may be empty); records them as a standalone val row in metrics.h5 (not\n"
     "  while a trainer runs the job). --pairs-out: per-pair results (docs/analysis.md).\n"
     "  --hallucination: the demo's hallucination benchmark: held-out scenes with known truth, answers generated and scored\n"
     "  (rate of false answers, CHAIR); recorded in the halluc table of metrics.h5 (docs/demo.md)."},
    {"generate", cmd_generate, "answers of the model (base + a checkpoint's adapters) to images and questions",
     "orpo-hpc generate JOB.yaml [--checkpoint STEP|latest|none|FILE]\n"
     "                  (--image IMG --prompt TEXT | [--data data.h5] --split val|train [--max-pairs N])\n"
     "                  [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--out answers.jsonl]\n"
     "  Autoregressive decoding with a KV cache, the training chat template; greedy unless --temperature > 0\n"
     "  (then sampled, reproducible from --seed). --split: every pair of the split, in batches, as JSONL (id,\n"
     "  image, prompt, answer, chosen, rejected, tokens) to --out or stdout. Docs: docs/cli.md."},
    {"plan", cmd_plan, "memory plan and step-time estimate of a job (no GPU, no weights needed)",
     "orpo-hpc plan JOB.yaml [--gpu-memory-gb N] [--gpu NAME] [--image WxH] [--pairs N] [--prompt N] [--answer N]\n"
     "                       [--ranks N] [--json] [--set key.path=value ...]\n"
     "  Every buffer of a training step (the size table: name, dtype, count, bytes, device or host, lifetime), the\n"
     "  memory strategies chosen to fit the budget and why, the device peak, the host memory, and a roofline\n"
     "  estimate of the step time and pairs/s on a GPU of the built-in table. model.path may be a model.h5, a\n"
     "  HuggingFace directory or its config.json (no weights are read); the micro-batch comes from data.h5's\n"
     "  largest pair, else from --image (672x672), --pairs (train.micro_batch_pairs) and the assumed --prompt /\n"
     "  --answer lengths. --ranks N: the data-parallel all-reduce too. --json: one JSON object.\n"
     "  Exit 3 when nothing fits (the smallest configuration and what would fit are printed). Docs: docs/plan.md."},
    {"validate", cmd_validate, "check a job file: types, ranges, unknown keys, files",
     "orpo-hpc validate JOB.yaml... [--set key.path=value ...] [--require-files] [--print-config]\n"
     "       orpo-hpc validate --print-schema | --print-keys\n"
     "  Reports every problem as FILE:LINE:COL: key.path: message and exits 2 if there is one.\n"
     "  --set overrides a key (repeatable); its relative paths resolve against the current directory,\n"
     "  relative paths inside the job file against the job file's directory. Missing model/data files are\n"
     "  warnings unless --require-files. --print-config prints the resolved job as YAML; --print-schema the\n"
     "  JSON Schema (schemas/job.schema.json); --print-keys the key table of docs/jobs.md."},
    {"inspect", cmd_inspect, "print the groups, datasets, shapes, dtypes and attributes of an HDF5 file",
     "orpo-hpc inspect FILE.h5 [--attrs] [--max-depth N]"},
    {"import-model", cmd_import_model, "HuggingFace LLaVA-NeXT directory -> model.h5 (NF4, bf16 or fp32)",
     "orpo-hpc import-model --from DIR --out model.h5 [--quant nf4|bf16|fp32] [--quant-scope decoder|all-linear]\n"
     "                      [--nf4-flavor cuda|cpu]\n"
     "  Reads config.json, *.safetensors (sharded or not; fp16/bf16/fp32; llava-hf 4.x or 5.x names or the\n"
     "  original liuhaotian names) and the tokenizer/processor files, one tensor at a time. nf4 quantizes the\n"
     "  decoder linears (all-linear: vision tower and projector too) exactly as bitsandbytes does (flavor cuda:\n"
     "  its GPU kernels, the default; cpu: its CPU back end); norms, embeddings and lm_head stay bf16.\n"
     "  On error (exit 3) nothing is written at --out."},
    {"import-data", cmd_import_data, "RLAIF-V Parquet files or JSONL+images -> data.h5",
     "orpo-hpc import-data --model model.h5 --out data.h5 (--parquet FILE... | --jsonl FILE --images DIR)\n"
     "                     [--max-pairs N] [--val-fraction F] [--seed S] [--max-tokens N] [--no-progress]\n"
     "  Tokenizes with model.h5's tokenizer, checks every image decodes, stores the encoded images as they are;\n"
     "  corrupt or missing images, empty or identical answers and over-long pairs are skipped and counted.\n"
     "  Docs: docs/data.md."},
    {"export", cmd_export, "a job's checkpoint as a PEFT adapter or a merged HF model (transformers, vLLM)",
     "orpo-hpc export JOB.yaml [--peft DIR] [--merged DIR] [--checkpoint STEP|latest|FILE] [--dtype fp32|bf16]\n"
     "                [--key-layout current|legacy] [--set key.path=value ...]\n"
     "  Writes adapter_config.json, adapter_model.safetensors and a README.md model card as PEFT's\n"
     "  save_pretrained does for LlavaNextForConditionalGeneration (legacy: transformers < 4.52 key names).\n"
     "  --merged: a complete HF model directory, LoRA merged into the dequantized base, sharded bf16.\n"
     "  Default checkpoint: the newest that verifies. Docs: docs/export.md."},
    {"import-adapter", cmd_import_adapter, "start a job from an existing PEFT LoRA adapter (step-0 state)",
     "orpo-hpc import-adapter --peft DIR --job JOB.yaml [--set key.path=value ...]\n"
     "  Checks rank, alpha, targets and shapes against the job (exit 2 or 3 naming the tensor), then writes\n"
     "  checkpoint step 0 into job.output_dir; orpo-hpc resume JOB.yaml continues from it."},
    {"make-demo", cmd_make_demo, "write the tiny demo model and synthetic preference data",
     "orpo-hpc make-demo --out DIR [--pairs N] [--seed S] [--mix c,s,n,p,e,d] [--init scaled|hf|built]\n"
     "  DIR/model: a tiny LLaVA-NeXT as a HuggingFace directory; DIR/data: synthetic preference pairs as PNG +\n"
     "  pairs.jsonl and an RLAIF-V-shaped Parquet file. Docs: docs/demo.md."},
    {"bench", cmd_bench, "benchmarks: forward, step, generate",
     "orpo-hpc bench forward --model DIR|model.h5 [--image HxW] [--text N] [--iters N]\n"
     "       orpo-hpc bench step --model DIR|model.h5 [--image HxW] [--pairs N] [--prompt N] [--answer N] [--iters N]\n"
     "                           [--ranks N [--values N]]\n"
     "       orpo-hpc bench step --shape llava-v1.6-mistral-7b|demo|config.json --random-weights [--image HxW]\n"
     "                           [--pairs N] [--prompt N] [--answer N] [--iters N] [--warmup N] [--gpu-memory-gb G]\n"
     "                           [--device auto|cpu|cuda] [--attention auto|cudnn|kernels] [--set k=v ...]\n"
     "       orpo-hpc bench generate --model DIR|model.h5 [--image HxW] [--prompt N] [--new N] [--batch N] [--iters N]\n"
     "  forward: CPU forward of one image + text; step: one ORPO micro-batch (forward + backward) with and\n"
     "  without prefix sharing; --ranks N: N MPI ranks (mpirun -np N, started by the command when no launcher\n"
     "  did), each one micro-batch, then the gradient sum of data parallelism: bytes summed, its time and share of\n"
     "  the step (docs/parallel.md); --values N: sum N values instead of the model's trainable ones.\n"
     "  step --shape: no checkpoint: the shape's config with random weights (decoder linears NF4), the reference\n"
     "  QLoRA job (jobs/llava16-mistral7b-8gb.yaml's LoRA; --set to change it) planned for the device and budget\n"
     "  (--gpu-memory-gb; on a GPU default its memory), warm-up + timed training steps (forward, backward, AdamW):\n"
     "  step time, pairs/s, tokens/s and the measured peak device memory beside the plan's; a 7B shape needs a\n"
     "  GPU (exit 2 on the CPU). --attention (runtime.attention): cudnn = cuDNN's fused attention (exit 2 when\n"
     "  not built or its self-test on the GPU fails), kernels = the attention kernels, auto (default) = cudnn when\n"
     "  built and its self-test passes, else kernels, with one line saying why; the step then prints how many\n"
     "  attention calls cuDNN ran. Record results in docs/performance.md with the machine."},
    {"device", cmd_device, "show the compute devices this binary can use",
     "orpo-hpc device [--selftest] [--want auto|cpu|cuda]\n"
     "  Lists whether CUDA is built in and which GPUs the driver reports; --selftest runs a\n"
     "  small kernel and a cuBLAS/cuBLASLt GEMM on GPU 0 and compares them with the CPU, then every op of\n"
     "  the CUDA op table on small random inputs against the CPU bf16 reference, each within its stated\n"
     "  tolerance (exit 1 naming the op that disagrees; exit 2 without a GPU or a CUDA build); --want shows\n"
     "  what runtime.device would pick (exit 2 when cuda is asked for and no GPU is usable)."},
};
const int cli_ncommands = (int)(sizeof cli_commands / sizeof cli_commands[0]);

const cli_command *cli_find(const char *name) {
    for (int i = 0; i < cli_ncommands; i++)
        if (!strcmp(cli_commands[i].name, name)) return &cli_commands[i];
    return NULL;
}

void cli_print_help(FILE *fp) {
    fprintf(fp,
            "orpo-hpc %s — ORPO preference alignment of LLaVA-NeXT with QLoRA adapters\n\n"
            "usage: orpo-hpc COMMAND [ARGS]\n"
            "       orpo-hpc help COMMAND\n"
            "       orpo-hpc --version\n\ncommands:\n",
            ORPO_VERSION);
    for (int i = 0; i < cli_ncommands; i++)
        fprintf(fp, "  %-13s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(fp,
            "\nJob commands take --set key.path=value (repeatable) to override a job key.\n"
            "Exit codes: 0 done, 1 internal error, 2 bad job or arguments, 3 bad model or data file,\n"
            "            4 I/O failure, 75 interrupted and checkpointed (requeue).\n"
            "Environment: ORPO_LOG=debug|info|warn|error. Docs: docs/cli.md, docs/jobs.md.\n");
}

void cli_print_command_help(const cli_command *c, FILE *fp) {
    fprintf(fp, "orpo-hpc %s — %s\n\nusage: %s\n", c->name, c->summary, c->usage);
}

int cli_not_built(const char *name, const char *what) {
    log_error("'%s' is not built yet (%s); nothing was done", name, what);
    return ERR_ARGS;
}

int cli_fail(void) {
    log_error_current();
    return err_exit_code(err_code());
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return 1;
    return 0;
}

/* `--out models/llava16.h5` in a fresh clone: models/ is created (as mkdir -p would) and said so */
int cli_out_parent(const char *out) {
    char dir[4096];
    fs_dirname(out, dir, sizeof dir);
    if (fs_exists(dir)) return ERR_OK;
    int rc = fs_mkdirs(dir);
    if (!rc) log_info("created the directory %s", dir);
    return rc;
}
