#!/usr/bin/env bash
# On a machine with a GPU: resume is bit-identical on the GPU (issue 12): the demo job trained 6 steps straight, and
# trained 3 steps then resumed to 6 from the step-3 checkpoint, give the same train rows and the same final
# checkpoint (parameters, AdamW moments) bit for bit. Skipped (77) without a GPU.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
. "$src/tests/cuda/gpu_util.sh"
gpu_demo_start resumegpu
for t in h5dump h5diff; do command -v $t >/dev/null || { echo "FAIL: $t (hdf5-tools) is needed to compare the runs"; exit 1; }; done
set_=(--set runtime.device=cuda --set checkpoint.every_steps=3 --set eval.every_steps=0)
out=$("$bin" train "$job" "${set_[@]}" --set "job.output_dir=$tmp/straight" --set train.max_steps=6 2>&1)
code $? 0 "train 6 steps on cuda"
out=$("$bin" train "$job" "${set_[@]}" --set "job.output_dir=$tmp/resumed" --set train.max_steps=3 2>&1)
code $? 0 "train 3 steps on cuda"
out=$("$bin" resume "$job" "${set_[@]}" --set "job.output_dir=$tmp/resumed" --set train.max_steps=6 2>&1)
code $? 0 "resume to step 6 on cuda"
grep -q "step 6/\|checkpoint step 6 written" <<<"$out" || bad "the resume did not reach step 6: $(tail -5 <<<"$out")"
same_run "$tmp/straight" "$tmp/resumed" "resumed vs straight on the GPU" 6
echo "$fails failed"
[ $fails -eq 0 ]
