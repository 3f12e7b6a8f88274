#!/usr/bin/env bash
# The size table is the truth (issue 11): on the CPU, the demo job's measured memory equals the plan, byte for byte.
# The trainer carves every buffer from the size table (llava_size.c), and the backend counts what it hands out
# (ops mem_stats); a training run logs both when it ends:
#   memory: weights W (plan W); device high-water D (plan D); host H (plan H)
# Checked for the demo job as `make demo` runs it (jobs/demo.yaml, eval samples on so generation's KV cache is in
# both), with gradient checkpointing off and on. A buffer allocated outside the table, or a table item the trainer
# does not carve, shows as a difference here.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-planmem-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
export ORPO_LOG=info

mkdir -p "$tmp/jobs"
cp "$src/jobs/demo.yaml" "$tmp/jobs/demo.yaml"
"$bin" make-demo --out "$tmp/demo" --pairs 40 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }
"$bin" import-model --from "$tmp/demo/model" --out "$tmp/demo/model.h5" >/dev/null 2>&1 || { echo "FAIL: import-model"; exit 1; }
"$bin" import-data --parquet "$tmp/demo/data/rlaif-v-demo.parquet" --model "$tmp/demo/model.h5" \
    --out "$tmp/demo/data.h5" --val-fraction 0.25 --seed 1 >/dev/null 2>&1 || { echo "FAIL: import-data"; exit 1; }

check() { # $1: what, rest: --set arguments
    local what=$1
    shift
    local out line
    out=$("$bin" train --restart "$tmp/jobs/demo.yaml" --set train.max_steps=2 --set eval.every_steps=2 \
          --set eval.samples=2 "$@" 2>&1)
    line=$(grep -o 'memory: weights .*' <<<"$out")
    if [ -z "$line" ]; then echo "FAIL: $what: no memory line in:"; echo "$out" | tail -20; fails=$((fails + 1)); return; fi
    echo "$what: $line"
    # every "N bytes (plan M)" pair must have N == M
    local pairs
    pairs=$(grep -oE '[0-9]+ bytes \(plan [0-9]+\)' <<<"$line" | sed -E 's/([0-9]+) bytes \(plan ([0-9]+)\)/\1 \2/')
    [ "$(wc -l <<<"$pairs")" = 3 ] || { echo "FAIL: $what: expected 3 figures"; fails=$((fails + 1)); }
    while read -r got plan; do
        if [ "$got" != "$plan" ] || [ "$got" = 0 ]; then
            echo "FAIL: $what: measured $got bytes, plan $plan"; fails=$((fails + 1))
        fi
    done <<<"$pairs"
}
check "demo job" --set train.gradient_checkpointing=false
check "demo job, recompute" --set train.gradient_checkpointing=true

if [ $fails -eq 0 ]; then echo "test_plan_memory: all checks passed"; else echo "test_plan_memory: $fails failed"; exit 1; fi
