#!/usr/bin/env bash
# The vision-feature cache (runtime.vision_cache, issue 11 item 5; src/train/vcache.c), on the demo job trained
# 3 steps (validation with generated samples at steps 0 and 3):
#  - the first run builds the cache (the log says so), a second run reuses it (the log says so);
#  - both runs' train metrics and checkpoints (parameters, AdamW moments) are bit-identical to a run that runs the
#    vision tower (the features are computed image by image either way), and so are their validation lines; the
#    same in bf16 (the cache then holds bf16 features);
#  - a cache built for other data or another activation dtype is refused (exit 3, the file, the attribute and both
#    values named, "delete"), and left as it was;
#  - a plan that needs the cache (a small runtime.gpu_memory_gb) without runtime.vision_cache: exit 3 with the fix;
#  - an interrupted build leaves no file: a file-size limit (exit 4, no cache, no temporary), SIGTERM during the
#    build (exit 75, nothing left), and a kill -9 during the build (no cache; the next run removes the temporary,
#    says so, and builds it).
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-vcache-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
has() { grep -qF -- "$2" <<<"$1" || { bad "expected '$2' in:"; echo "$1" | tail -15; }; }
code() { [ "$1" = "$2" ] || bad "$3: exit $1, expected $2"; }
export ORPO_LOG=info
for t in h5dump h5diff; do command -v $t >/dev/null || { echo "FAIL: $t (hdf5-tools) is needed to compare the runs"; exit 1; }; done

mkdir -p "$tmp/jobs"
cp "$src/jobs/demo.yaml" "$tmp/jobs/demo.yaml"
job=$tmp/jobs/demo.yaml
. "$src/tests/demo_inputs.sh"
demo_inputs "$tmp/demo"
# other data for the same model: 200 pairs (its cache takes a while to build: the kill -9 below)
"$bin" make-demo --out "$tmp/demo2" --pairs 200 >/dev/null 2>&1 || { echo "FAIL: make-demo 200"; exit 1; }
"$bin" import-data --parquet "$tmp/demo2/data/rlaif-v-demo.parquet" --model "$tmp/demo/model.h5" \
    --out "$tmp/demo/data2.h5" --val-fraction 0.25 --seed 1 >/dev/null 2>&1 || { echo "FAIL: import-data 2"; exit 1; }

train() { # $1: output dir, rest: --set arguments
    local dir=$1
    shift
    "$bin" train --restart "$job" --set train.max_steps=3 --set eval.samples=2 --set "job.output_dir=$dir" "$@" 2>&1
}
# shared with test_plan_memory.sh: train_rows, same_run
. "$src/tests/unit/run_compare.sh"
vallines() { grep -oE 'validation at step [0-9]+: .*rejected [-0-9.]+' <<<"$1"; }

# ---- built once, reused, the same bits as running the tower ----
out_a=$(train "$tmp/run_a" --set "runtime.vision_cache=$tmp/vc.h5"); code $? 0 "train with a new cache"
has "$out_a" "vision cache $tmp/vc.h5: building the features of 40 pairs (32 train, 8 val)"
has "$out_a" "vision cache $tmp/vc.h5: built, 40 pairs"
has "$out_a" "strategies: vision features from cache"
[ -s "$tmp/vc.h5" ] || bad "no cache file"
cp "$tmp/vc.h5" "$tmp/vc.copy"
out_b=$(train "$tmp/run_b" --set "runtime.vision_cache=$tmp/vc.h5"); code $? 0 "train with the cache"
has "$out_b" "vision cache $tmp/vc.h5: reusing it (40 pairs"
grep -qF "building the features" <<<"$out_b" && bad "the second run built the cache again"
cmp -s "$tmp/vc.h5" "$tmp/vc.copy" || bad "reusing the cache changed it"
out_c=$(train "$tmp/run_c"); code $? 0 "train running the tower"
grep -qF "vision cache" <<<"$out_c" && bad "a run without runtime.vision_cache used a cache"
same_run "$tmp/run_a" "$tmp/run_c" "building run vs tower run"
same_run "$tmp/run_b" "$tmp/run_c" "cached run vs tower run"
va=$(vallines "$out_a"); vb=$(vallines "$out_b"); vc=$(vallines "$out_c")
[ "$(wc -l <<<"$vc")" = 2 ] && [ "$va" = "$vc" ] && [ "$vb" = "$vc" ] || bad "validation lines differ: $va / $vb / $vc"
# bf16 activations: the features stored as bf16 (another file), the same bits as the bf16 tower run
out=$(train "$tmp/run_bc" --set runtime.precision=bf16 --set "runtime.vision_cache=$tmp/vc_bf16.h5")
code $? 0 "bf16 with a new cache"
has "$out" "vision cache $tmp/vc_bf16.h5: built, 40 pairs"
out=$(train "$tmp/run_bt" --set runtime.precision=bf16); code $? 0 "bf16 running the tower"
same_run "$tmp/run_bc" "$tmp/run_bt" "bf16: cached run vs tower run"
has "$(h5dump -H -d /features/0 "$tmp/vc_bf16.h5" 2>&1)" '"/types/bfloat16"'
# the file's format (docs/formats.md)
info=$("$bin" inspect "$tmp/vc.h5" --attrs 2>&1)
for k in 'format = "orpo-hpc/vision-cache"' "format_version = 1" "act_dtype" "model_hash" "data_hash" "np = " "dv = "; do
    has "$info" "$k"
done

# ---- a cache of other data / another activation dtype: refused, untouched ----
out=$(train "$tmp/run_x" --set "runtime.vision_cache=$tmp/vc.h5" --set "data.path=$tmp/demo/data2.h5")
code $? 3 "cache of other data"
has "$out" "$tmp/vc.h5: a vision cache built for another data: attribute data_hash is"
has "$out" "delete the file"
out=$(train "$tmp/run_x" --set "runtime.vision_cache=$tmp/vc.h5" --set runtime.precision=bf16)
code $? 3 "cache of another activation dtype"
has "$out" "attribute act_dtype is f32, this run's is bf16"
cmp -s "$tmp/vc.h5" "$tmp/vc.copy" || bad "a refused cache was changed"

# ---- the planner needs the cache (small budget) but the job names none ----
# The budget lies between the plan's peaks for these 40 pairs (orpo-hpc plan, gradient checkpointing): 26,620,424
# bytes with chunks and recompute, 24,789,576 with the cache too; 0.024 GiB = 25,769,804 bytes. It depends on the
# longest pair of make-demo's data: re-derive it when the demo's answers change (0.025 fitted the former answers).
out=$(train "$tmp/run_x" --set train.gradient_checkpointing=true --set runtime.gpu_memory_gb=0.024)
code $? 3 "a plan with the vision cache, no runtime.vision_cache"
has "$out" "set runtime.vision_cache: PATH"

# ---- an interrupted build leaves no file ----
mkdir "$tmp/lim"
out=$( (ulimit -f 64; exec "$bin" train --restart "$job" --set train.max_steps=1 --set "job.output_dir=$tmp/run_l" \
       --set "runtime.vision_cache=$tmp/lim/vc.h5") 2>&1)
code $? 4 "a build under ulimit -f 64"
has "$out" "$tmp/lim/vc.h5"
[ -e "$tmp/lim/vc.h5" ] && bad "a failed build left $tmp/lim/vc.h5"
ls -A "$tmp/lim" | grep -q '\.tmp\.' && bad "a failed build left a temporary: $(ls -A "$tmp/lim")"
# SIGTERM once the build's temporary exists (waiting up to 60 s for it is no timing assertion): exit 75, nothing left
wait_temp() { # $1: dir, $2: pid
    local i
    for i in $(seq 1200); do
        if ls -A "$1" | grep -q '\.tmp\.'; then return 0; fi
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
mkdir "$tmp/t"
"$bin" train --restart "$job" --set train.max_steps=1 --set "job.output_dir=$tmp/run_t" --set "data.path=$tmp/demo/data2.h5" \
    --set "runtime.vision_cache=$tmp/t/vc.h5" >"$tmp/t.log" 2>&1 &
pid=$!
if wait_temp "$tmp/t" $pid; then
    kill -TERM $pid
    wait $pid; rc=$?
    code $rc 75 "SIGTERM during the build"
    has "$(cat "$tmp/t.log")" "vision cache $tmp/t/vc.h5: stopped by a signal"
    [ -z "$(ls -A "$tmp/t")" ] || bad "SIGTERM during the build left: $(ls -A "$tmp/t")"
else
    wait $pid
    bad "the build's temporary never appeared (log: $(tail -3 "$tmp/t.log"))"
fi
# kill -9 once the build's temporary exists (waiting up to 60 s for it is no timing assertion)
mkdir "$tmp/k"
"$bin" train --restart "$job" --set train.max_steps=1 --set "job.output_dir=$tmp/run_k" --set "data.path=$tmp/demo/data2.h5" \
    --set "runtime.vision_cache=$tmp/k/vc.h5" >"$tmp/k.log" 2>&1 &
pid=$!
seen=0
wait_temp "$tmp/k" $pid && seen=1
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
if [ $seen = 1 ]; then
    [ -e "$tmp/k/vc.h5" ] && bad "kill -9 during the build left $tmp/k/vc.h5"
    out=$(train "$tmp/run_k" --set "data.path=$tmp/demo/data2.h5" --set "runtime.vision_cache=$tmp/k/vc.h5")
    code $? 0 "the build after a kill -9"
    has "$out" "removed 1 temporary file(s) of an interrupted build"
    has "$out" "built, 200 pairs"
    ls -A "$tmp/k" | grep -q '\.tmp\.' && bad "a temporary is left after the rebuild: $(ls -A "$tmp/k")"
else
    bad "the build's temporary never appeared (log: $(tail -3 "$tmp/k.log"))"
fi

if [ $fails -eq 0 ]; then echo "test_vision_cache: all checks passed"; else echo "test_vision_cache: $fails failed"; exit 1; fi
