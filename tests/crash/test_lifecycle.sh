#!/usr/bin/env bash
# Job lifecycle of `orpo-hpc train | resume` (DESIGN.md "Job lifecycle and signals", issue 6):
#  - train refuses an output directory that holds checkpoints (exit 2, the message says resume / --restart) and
#    touches nothing; train --restart moves checkpoints, metrics and the frozen job.yaml aside (kept, unchanged)
#    and starts over;
#  - resume refuses a changed result-changing key (exit 2, naming each key with its old and new value) and touches
#    nothing; it accepts changes of train.max_steps and checkpoint.every_steps (and checkpoint.keep_last);
#  - a resume that has nothing left to do still keeps only checkpoint.keep_last checkpoints.
# Bit-exactness across such resumes is checked by test_resume_keys (C); this script checks exit codes, messages
# and files.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-lifecycle-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
hasre() { if ! grep -qE -- "$2" <<<"$1"; then echo "FAIL: expected /$2/ in:"; echo "$1"; fails=$((fails + 1)); fi; }
has() { if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: expected '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
hasnt() { if grep -qF -- "$2" <<<"$1"; then echo "FAIL: did not expect '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
code() { if [ "$1" != "$2" ]; then echo "FAIL: $3: exit $1, expected $2"; fails=$((fails + 1)); fi; }
same() { if ! cmp -s "$1" "$2"; then echo "FAIL: $3: $1 and $2 differ"; fails=$((fails + 1)); fi; }
eqsteps() { local s; s=$(steps "$1"); if [ "$s" != "$2 " ]; then echo "FAIL: $3: checkpoints '$s', expected '$2'"; fails=$((fails + 1)); fi; }
steps() { (cd "$1/checkpoints" 2>/dev/null && ls step-????????.h5 2>/dev/null | sed 's/step-0*\([0-9][0-9]*\)\.h5/\1/; s/^$/0/' | tr '\n' ' '); }
export ORPO_LOG=info

# set-up: demo model and data, the job of tests/crash/job.yaml.in
"$bin" make-demo --out "$tmp/D" --pairs 120 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }
"$bin" import-model --from "$tmp/D/model" --out "$tmp/D/model.h5" >/dev/null 2>&1 || { echo "FAIL: import-model"; exit 1; }
"$bin" import-data --parquet "$tmp/D/data/rlaif-v-demo.parquet" --model "$tmp/D/model.h5" --out "$tmp/D/data.h5" \
    --val-fraction 0.25 --seed 1 >/dev/null 2>&1 || { echo "FAIL: import-data"; exit 1; }
sed "s|@DIR@|$tmp|g" "$src/tests/crash/job.yaml.in" >"$tmp/job.yaml"
job="$tmp/job.yaml"
run="$tmp/run"   # job.output_dir of the template

# ---- train, train again, train --restart ---------------------------------------------------------
out=$("$bin" train "$job" --set train.max_steps=6 2>&1); code $? 0 "train to step 6"
eqsteps "$run" "3 6" "train to step 6"
cp "$run/checkpoints/step-00000006.h5" "$tmp/ck6.h5"
cp "$run/metrics.h5" "$tmp/metrics6.h5"
cp "$run/job.yaml" "$tmp/job6.yaml"

out=$("$bin" train "$job" --set train.max_steps=6 2>&1); code $? 2 "train over existing checkpoints"
has "$out" "error: $run/checkpoints holds checkpoints already"
has "$out" "orpo-hpc resume $job"
has "$out" "orpo-hpc train --restart $job"
hasnt "$out" "step 1/"
same "$run/checkpoints/step-00000006.h5" "$tmp/ck6.h5" "train refused: checkpoint 6"
same "$run/metrics.h5" "$tmp/metrics6.h5" "train refused: metrics.h5"

out=$("$bin" train --restart "$job" --set train.max_steps=3 2>&1); code $? 0 "train --restart"
has "$out" "--restart: previous checkpoints and metrics moved to $run/restart-"
aside=$(ls -d "$run"/restart-* 2>/dev/null | head -1)
if [ -z "$aside" ]; then echo "FAIL: no restart-* directory in $run"; fails=$((fails + 1)); else
    same "$aside/checkpoints/step-00000006.h5" "$tmp/ck6.h5" "moved aside: checkpoint 6"
    same "$aside/metrics.h5" "$tmp/metrics6.h5" "moved aside: metrics.h5"
    same "$aside/job.yaml" "$tmp/job6.yaml" "moved aside: job.yaml"
fi
eqsteps "$run" "3" "after train --restart"
has "$out" "training crash at step 0 of 3"

# ---- resume with a changed result-changing key: refused, nothing touched ---------------------------
cp "$run/checkpoints/step-00000003.h5" "$tmp/ck3.h5"
cp "$run/metrics.h5" "$tmp/metrics3.h5"
out=$("$bin" resume "$job" --set lora.rank=8 2>&1); code $? 2 "resume --set lora.rank=8"
hasre "$out" "lora\.rank: +4 then, +8 now"
has "$out" "train --restart"
hasnt "$out" "resuming from"
out=$("$bin" resume "$job" --set train.lr=2e-3 --set lora.dropout=0.1 2>&1); code $? 2 "resume --set train.lr, lora.dropout"
hasre "$out" "train\.lr: +0\.001 then, +0\.002 now"
hasre "$out" "lora\.dropout: +0\.05 then, +0\.1 now"
hasnt "$out" "lora.rank"
same "$run/checkpoints/step-00000003.h5" "$tmp/ck3.h5" "refused resume: checkpoint 3"
same "$run/metrics.h5" "$tmp/metrics3.h5" "refused resume: metrics.h5"
eqsteps "$run" "3" "after the refused resumes"

# ---- resume with changed max_steps / every_steps: accepted ---------------------------------------
out=$("$bin" resume "$job" --set train.max_steps=12 --set checkpoint.every_steps=4 2>&1)
code $? 0 "resume --set train.max_steps=12 checkpoint.every_steps=4"
has "$out" "resuming from $run/checkpoints/step-00000003.h5 (step 3,"
has "$out" "checkpoint step 4 written"
has "$out" "checkpoint step 8 written"
has "$out" "checkpoint step 12 written"
hasnt "$out" "checkpoint step 6 written"
eqsteps "$run" "8 12" "resume with every_steps 4, keep_last 2"

# ---- a resume with nothing left to do keeps checkpoint.keep_last ---------------------------------
# (a kill -9 between the final checkpoint and its pruning, or a lowered keep_last, leaves more)
out=$("$bin" resume "$job" --set train.max_steps=18 --set checkpoint.keep_last=10 2>&1); code $? 0 "resume to 18, keep 10"
eqsteps "$run" "8 12 15 18" "resume to 18 keeping 10"
out=$("$bin" resume "$job" --set train.max_steps=18 2>&1); code $? 0 "resume at the end, keep_last 2"
has "$out" "resuming from $run/checkpoints/step-00000018.h5 (step 18,"
hasnt "$out" "step 19/"
eqsteps "$run" "15 18" "checkpoint.keep_last 2 after a resume with nothing to do"

echo "$fails failed"
[ $fails -eq 0 ]
