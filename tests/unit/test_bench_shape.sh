#!/usr/bin/env bash
# `orpo-hpc bench step --shape` (issue 12): a model shape with random weights and no checkpoint. On the CPU the demo
# shape runs warm-up + timed steps and prints step time, pairs/s, tokens/s and the measured peak device memory beside
# the plan's prediction; on the CPU the measured memory IS the plan, byte for byte (the trainer carves every buffer
# from the size table, as tests/unit/test_plan_memory.sh shows for train), also under a budget that makes the planner
# choose memory strategies (runtime.vision_cache: the features come from a cache). The 7B shape is refused on the CPU
# (exit 2: a GPU is needed), as is a shape without --random-weights. No timing is asserted.
set -u
bin=${ORPO_BIN:?}
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-bench-shape-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
expect_rc() { # expect_rc RC CMD...  (stdout in $out, stderr in $err)
  local want=$1; shift
  out=$("$@" 2>"$tmp/err"); rc=$?
  err=$(cat "$tmp/err")
  if [ "$rc" -eq "$want" ]; then ok; else bad "'$*' exited $rc, expected $want: $err"; fi
}
has() { if grep -q -- "$1" <<<"$2"; then ok; else bad "output lacks '$1': $2"; fi; }

expect_rc 0 "$bin" bench step --shape demo --random-weights --image 64x64 --pairs 2 --iters 1 --warmup 1 --device cpu
echo "$out"
has "shape: demo, random weights (decoder linears NF4)" "$out"
has "step (forward, backward and AdamW update of one micro-batch, prefix shared): best .* ms, mean .* over 1 steps after 1 warm-up; .* pairs/s, .* tokens/s" "$out"
has "peak device memory: measured .* the plan predicted .* measured/plan 1.000" "$out"
# byte for byte: "(N / N bytes)"
if grep -Eq '\(([0-9]+) / \1 bytes\)' <<<"$out"; then ok; else bad "measured memory differs from the plan's: $out"; fi

# the features from a cache (a strategy of the plan): the bench fills the feature buffer instead of running the tower
expect_rc 0 "$bin" bench step --shape demo --random-weights --image 64x64 --pairs 1 --iters 1 --warmup 0 --device cpu \
  --set runtime.vision_cache=auto
echo "$out"
has "measured/plan 1.000" "$out"

expect_rc 2 "$bin" bench step --shape llava-v1.6-mistral-7b --random-weights --image 672x672 --pairs 2 --device cpu
has "needs a GPU" "$err"
has "use a small shape (--shape demo)" "$err"
expect_rc 2 "$bin" bench step --shape demo --image 64x64
has "needs --random-weights" "$err"
expect_rc 2 "$bin" bench step --shape no-such-shape --random-weights
has "expected llava-v1.6-mistral-7b, demo or a config.json" "$err"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
