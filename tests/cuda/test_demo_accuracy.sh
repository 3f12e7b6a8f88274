#!/usr/bin/env bash
# On a machine with a GPU (long: minutes; tools/gpu/check.sh runs it only with ORPO_GPU_LONG=1): the demo job as
# `make demo` runs it (6,000 pairs, jobs/demo.yaml, ~1,700 steps) on runtime.device cuda reaches a final validation
# preference accuracy >= 0.9 (issue 12). On the CPU the current demo ends at 0.898 (fp32, make-demo seed 1) and at
# 0.900 / 0.854 with seeds 2 / 3 (docs/demo.md, "Round 5"): the outcome depends on the seed, and a GPU run (bf16, other
# summation orders) is in effect another seed, so this can fail on a correct backend. Skipped (77) without a GPU.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
. "$src/tests/cuda/gpu_util.sh"
gpu_demo_start demoacc 6000
t0=$(date +%s)
out=$("$bin" train "$tmp/jobs/demo.yaml" --set runtime.device=cuda --set "job.output_dir=$tmp/run" 2>&1)
rc=$?
[ $rc = 0 ] || bad "train on cuda: exit $rc: $(tail -5 <<<"$out")"
last=$(grep -o 'validation at step [0-9]*: [0-9]* pairs, accuracy [0-9.]*' <<<"$out" | tail -1)
acc=${last##* }
echo "final: ${last:-no validation line} ($(($(date +%s) - t0)) s)"
awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.9) }' || bad "final validation accuracy ${acc:-none} < 0.9"
echo "$fails failed"
[ $fails -eq 0 ]
