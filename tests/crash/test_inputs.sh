#!/usr/bin/env bash
# The job lifecycle around its inputs and its order of work (issue 10, points 3-6):
#  - a start whose set-up fails (a bad data file, exit 3) freezes nothing: after fixing data.path, resume works;
#  - a checkpoint and a validation on the same step: the checkpoint is written first; a resume at a validation
#    step whose validation is missing from the metrics does it;
#  - resume and eval refuse (exit 2, naming the file and both content hashes) a model.h5 re-imported with other
#    weights but the same shapes, and a data.h5 re-imported with another split seed; --accept-changed-inputs
#    goes on; eval on another data set (another path) is not refused;
#  - eval works on an evaluation-only data set (empty train split), records a standalone val row in metrics.h5,
#    and writes per-pair results with --pairs-out (.jsonl, .h5).
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
table=$src/tools/slurm/h5table.sh
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-inputs-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
has() { if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: expected '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
hasnt() { if grep -qF -- "$2" <<<"$1"; then echo "FAIL: did not expect '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
code() { if [ "$1" != "$2" ]; then echo "FAIL: $3: exit $1, expected $2"; fails=$((fails + 1)); fi; }
check() { if ! eval "$1"; then echo "FAIL: $2"; fails=$((fails + 1)); fi; }
export ORPO_LOG=info

"$bin" make-demo --out "$tmp/D" --pairs 120 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }
"$bin" make-demo --out "$tmp/D7" --pairs 8 --seed 7 >/dev/null 2>&1 || { echo "FAIL: make-demo --seed 7"; exit 1; }
"$bin" import-model --from "$tmp/D/model" --out "$tmp/D/model.h5" >/dev/null 2>&1 || { echo "FAIL: import-model"; exit 1; }
"$bin" import-model --from "$tmp/D7/model" --out "$tmp/model7.h5" >/dev/null 2>&1 || { echo "FAIL: import-model 7"; exit 1; }
imp() { "$bin" import-data --parquet "$tmp/D/data/rlaif-v-demo.parquet" --model "$tmp/D/model.h5" --out "$1" \
        --val-fraction "$2" --seed "$3" >/dev/null 2>&1 || { echo "FAIL: import-data $1"; exit 1; }; }
imp "$tmp/D/data.h5" 0.25 1
imp "$tmp/data-seed2.h5" 0.25 2
imp "$tmp/evalonly.h5" 1 1
cp "$tmp/D/model.h5" "$tmp/model-orig.h5"
cp "$tmp/D/data.h5" "$tmp/data-orig.h5"
sed "s|@DIR@|$tmp|g" "$src/tests/crash/job.yaml.in" >"$tmp/job.yaml"
job="$tmp/job.yaml"
run="$tmp/run"

# ---- point 5: a failed set-up freezes nothing ----------------------------------------------------
echo "not an HDF5 file" >"$tmp/bad.h5"
out=$("$bin" train "$job" --set data.path="$tmp/bad.h5" --set train.max_steps=3 2>&1); code $? 3 "train with a bad data file"
check "[ ! -e '$run/job.yaml' ]" "a failed train left $run/job.yaml (the job is frozen with the bad data.path)"
out=$("$bin" resume "$job" --set train.max_steps=3 2>&1); code $? 0 "resume after fixing data.path"
hasnt "$out" "then,"
check "[ -e '$run/job.yaml' ]" "no $run/job.yaml after a successful start"

# ---- point 6: checkpoint before validation -------------------------------------------------------
out=$("$bin" train "$job" --set job.output_dir="$tmp/run6" --set train.max_steps=6 2>&1); code $? 0 "train to step 6"
ck=$(grep -n "checkpoint step 6 written" <<<"$out" | head -1 | cut -d: -f1)
va=$(grep -n "validation at step 6:" <<<"$out" | head -1 | cut -d: -f1)
check "[ -n '$ck' ] && [ -n '$va' ] && [ '$ck' -lt '$va' ]" "step 6: checkpoint (line ${ck:-none}) not before validation (line ${va:-none}):
$out"
# a checkpoint without its validation (interrupted there): resume at that step validates first
d2="$tmp/run2"
out=$("$bin" train "$job" --set job.output_dir="$d2" --set train.max_steps=4 --set eval.every_steps=0 2>&1)
code $? 0 "train to step 4 (validation only at the end)"
rm -f "$d2/checkpoints/step-00000004.h5"
check "[ -e '$d2/checkpoints/step-00000003.h5' ]" "no checkpoint 3 in $d2"
out=$("$bin" resume "$job" --set job.output_dir="$d2" --set train.max_steps=4 --set eval.every_steps=3 2>&1)
code $? 0 "resume at step 3 with eval.every_steps=3"
has "$out" "the validation of step 3 is not in the metrics"
rows=$("$table" "$d2/metrics.h5" /val)
check "grep -q '^step=3 ' <<<\"\$rows\"" "no val row at step 3 after the resume: $rows"

# ---- point 4: changed inputs ---------------------------------------------------------------------
out=$("$bin" resume "$job" --set train.max_steps=6 2>&1); code $? 0 "resume to step 6"
cp "$run/checkpoints/step-00000006.h5" "$tmp/ck6.h5"
cp "$tmp/model7.h5" "$tmp/D/model.h5"        # other weights, same shapes and tokenizer
out=$("$bin" resume "$job" --set train.max_steps=9 2>&1); code $? 2 "resume with a re-imported model"
has "$out" "the inputs changed since this checkpoint was written"
has "$out" "model $tmp/D/model.h5: content hash "
hasnt "$out" "data $tmp/D/data.h5: content hash"
has "$out" "--accept-changed-inputs"
hasnt "$out" "step 7/"
check "cmp -s '$run/checkpoints/step-00000006.h5' '$tmp/ck6.h5'" "a refused resume changed checkpoint 6"
out=$("$bin" eval "$job" 2>&1); code $? 2 "eval with a re-imported model"
has "$out" "model $tmp/D/model.h5: content hash "
cp "$tmp/model-orig.h5" "$tmp/D/model.h5"
cp "$tmp/data-seed2.h5" "$tmp/D/data.h5"      # the same rows, another split
out=$("$bin" resume "$job" --set train.max_steps=9 2>&1); code $? 2 "resume with data re-imported with another seed"
has "$out" "data $tmp/D/data.h5: content hash "
hasnt "$out" "model $tmp/D/model.h5: content hash"
out=$("$bin" eval "$job" 2>&1); code $? 2 "eval with data re-imported with another seed"
has "$out" "data $tmp/D/data.h5: content hash "
out=$("$bin" eval "$job" --accept-changed-inputs 2>&1); code $? 0 "eval --accept-changed-inputs"
out=$("$bin" resume "$job" --set train.max_steps=9 --accept-changed-inputs 2>&1); code $? 0 "resume --accept-changed-inputs"
has "$out" "going on as asked (--accept-changed-inputs)"
has "$out" "done at step 9"

# ---- point 3: eval of an evaluation-only data set, metrics row, per-pair results ---------------
out=$("$bin" train "$job" --set job.output_dir="$tmp/ev0" --set data.path="$tmp/evalonly.h5" 2>&1)
code $? 3 "train on an evaluation-only data set"
has "$out" "no training pairs"
out=$("$bin" eval "$job" --set data.path="$tmp/evalonly.h5" --set eval.max_pairs=0 --pairs-out "$tmp/pairs.jsonl" 2>&1)
code $? 0 "eval of an evaluation-only data set"
has "$out" "eval crash at step 9: 120 validation pairs"
has "$out" "the checkpoint was trained on \"$tmp/D/data.h5\""
has "$out" "recorded in $run/metrics.h5"
check "[ \"\$(wc -l <'$tmp/pairs.jsonl')\" = 120 ]" "pairs.jsonl: $(wc -l <"$tmp/pairs.jsonl") lines, expected 120"
first=$(head -1 "$tmp/pairs.jsonl")
for k in '"pair":' '"chosen_logps":' '"rejected_logps":' '"nll":' '"log_odds":' '"correct":'; do has "$first" "$k"; done
rows=$("$table" "$run/metrics.h5" /val)
check "grep -q '^step=9 .*standalone=1' <<<\"\$rows\"" "no standalone val row at step 9: $rows"
check "grep -q '^step=9 .*standalone=0' <<<\"\$rows\"" "the training val row at step 9 is gone: $rows"
out=$("$bin" eval "$job" --pairs-out "$tmp/pairs.h5" 2>&1); code $? 0 "eval --pairs-out .h5"
n=$(h5dump -H -d /pair "$tmp/pairs.h5" 2>/dev/null | grep -o 'SIMPLE { ( [0-9]* )' | grep -o '[0-9][0-9]*')
check "[ '$n' = 8 ]" "pairs.h5 /pair has '${n:-?}' rows, expected 8 (eval.max_pairs)"
out=$("$bin" eval "$job" --pairs-out "$tmp/pairs.csv" 2>&1); code $? 2 "eval --pairs-out .csv"
has "$out" "expected a file name ending in .h5 or .jsonl"
# an evaluation-only data set evaluated without any checkpoint (the initial adapters)
out=$("$bin" eval "$job" --set job.output_dir="$tmp/ev1" --set data.path="$tmp/evalonly.h5" 2>&1)
code $? 0 "eval without a checkpoint"
has "$out" "eval crash at step 0: 8 validation pairs"

if [ $fails -ne 0 ]; then echo "$fails failures"; exit 1; fi
echo "inputs: all checks passed"
