#!/usr/bin/env bash
# export / import-adapter from the command line on the demo job (docs/export.md): a 3-step run exported as a PEFT
# adapter (fp32, bf16, legacy key layout; the newest checkpoint or a step), imported as step 0 of another output
# directory and exported again byte-identical (bit-identical trainable tensors), resumed from there; refusals
# with exit 2 (rank, targets, existing checkpoints, bad options) and nothing written.
set -u
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # expect_rc RC CMD...
  local want=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ]; then ok; else bad "'$*' exited $rc, expected $want: $out"; fi
}
expect_out() { if grep -q -- "$1" <<<"$out"; then ok; else bad "output lacks '$1': $out"; fi; }
exists() { if [ -s "$1" ]; then ok; else bad "missing $1"; fi; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-export-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export ORPO_LOG=info
. "$src/tests/demo_inputs.sh"
demo_inputs "$tmp/D"
sed "s|@DIR@|$tmp|g" "$src/tests/crash/job.yaml.in" >"$tmp/job.yaml"
job="$tmp/job.yaml"

expect_rc 2 "$bin" export "$job" --peft "$tmp/none"            # no checkpoint yet
expect_out "no checkpoint that verifies"
if [ -e "$tmp/none" ]; then bad "export without a checkpoint created $tmp/none"; else ok; fi
expect_rc 0 "$bin" train "$job" --set train.max_steps=3

expect_rc 0 "$bin" export "$job" --peft "$tmp/A"
expect_out "exported step 3"
for f in adapter_config.json adapter_model.safetensors README.md; do exists "$tmp/A/$f"; done
expect_out "fp32, current key layout"
if grep -q '"r": 4' "$tmp/A/adapter_config.json" && grep -q 'lm_head' "$tmp/A/adapter_config.json"; then ok; else bad "adapter_config.json"; fi
if grep -q "^library_name: peft" "$tmp/A/README.md" && grep -q "Validation, step 3" "$tmp/A/README.md"; then ok; else bad "README.md"; fi
expect_rc 0 "$bin" export "$job" --peft "$tmp/H" --dtype bf16 --checkpoint 3
if grep -q '"BF16"' "$tmp/H/adapter_model.safetensors"; then ok; else bad "--dtype bf16 wrote no BF16 tensor"; fi
expect_rc 0 "$bin" export "$job" --peft "$tmp/L" --key-layout legacy --checkpoint "$tmp/run/checkpoints/step-00000003.h5"
if grep -q 'base_model.model.language_model.model.layers.0.self_attn.q_proj.lora_A.weight' "$tmp/L/adapter_model.safetensors"
then ok; else bad "legacy key layout"; fi
# --merged: an HF directory that import-model reads back
expect_rc 0 "$bin" export "$job" --merged "$tmp/M"
for f in config.json model.safetensors.index.json model-00001-of-00001.safetensors tokenizer.json preprocessor_config.json; do
  exists "$tmp/M/$f"
done
expect_rc 0 "$bin" import-model --from "$tmp/M" --out "$tmp/M.h5" --quant fp32
expect_rc 2 "$bin" export "$job" --peft "$tmp/X" --checkpoint 2
expect_rc 2 "$bin" export "$job" --peft "$tmp/X" --dtype fp16
expect_rc 2 "$bin" export "$job"

# import as step 0 of another output directory; exported again it is the same file, byte for byte
expect_rc 0 "$bin" import-adapter --peft "$tmp/A" --job "$job" --set job.output_dir="$tmp/run2"
exists "$tmp/run2/checkpoints/step-00000000.h5"
expect_rc 0 "$bin" export "$job" --set job.output_dir="$tmp/run2" --peft "$tmp/B"
if cmp -s "$tmp/A/adapter_model.safetensors" "$tmp/B/adapter_model.safetensors"; then ok; else bad "export -> import -> export differs"; fi
expect_rc 0 "$bin" import-adapter --peft "$tmp/L" --job "$job" --set job.output_dir="$tmp/run3"
expect_rc 0 "$bin" export "$job" --set job.output_dir="$tmp/run3" --peft "$tmp/C"
if cmp -s "$tmp/A/adapter_model.safetensors" "$tmp/C/adapter_model.safetensors"; then ok; else bad "legacy import differs"; fi
# refusals: checkpoints exist, rank, targets
expect_rc 2 "$bin" import-adapter --peft "$tmp/A" --job "$job" --set job.output_dir="$tmp/run2"
expect_out "already holds 1 checkpoint"
expect_rc 2 "$bin" import-adapter --peft "$tmp/A" --job "$job" --set job.output_dir="$tmp/run4" --set lora.rank=8
expect_out "the adapter has rank r=4, the job has lora.rank 8"
expect_rc 2 "$bin" import-adapter --peft "$tmp/A" --job "$job" --set job.output_dir="$tmp/run4" --set lora.targets=q_proj,k_proj,v_proj,o_proj,mm_projector
expect_out "base_model.model.lm_head.lora_A.weight is not trained by this job"
if [ -e "$tmp/run4/checkpoints" ] && [ -n "$(ls "$tmp/run4/checkpoints")" ]; then bad "a refused import wrote a checkpoint"; else ok; fi
# the imported job trains on
expect_rc 0 "$bin" resume "$job" --set job.output_dir="$tmp/run2" --set train.max_steps=2
exists "$tmp/run2/checkpoints/step-00000002.h5"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
