#!/usr/bin/env bash
# What a newcomer met on the way from a download to a running job (issue 16), each checked on the tiny demo:
#  - point 1: import-model / import-data create the missing parent directories of --out; validate warns about
#    runtime.device: cuda, which this binary cannot train with (and says ok otherwise);
#  - point 4: a job whose data.val_fraction / data.seed / data.max_tokens disagree with how data.h5 was imported is
#    refused with both values (eval warns), never silently trained on another split than it says;
#  - point 6: a run directory moved together with its inputs resumes and evaluates (content hashes, not paths);
#  - point 7: train --restart checks the new inputs before it moves the old run aside (a failing restart keeps it),
#    and two restarts within the same second both work (restart-<time>-2);
#  - point 8: progress lines every runtime.log_every_s seconds plus every checkpoint and validation step, not
#    every step (0: every step);
#  - point 9: a job whose model.path does not exist: exit 4 (a missing file), as docs/cli.md says;
#  - point 13: make-demo prints the import-data options jobs/demo.yaml relies on, and a make-demo over a larger,
#    earlier demo leaves only its own images.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-newcomer-XXXXXX")
fails=0
trap 'if [ $fails -eq 0 ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi' EXIT
has() { if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: expected '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
hasnt() { if grep -qF -- "$2" <<<"$1"; then echo "FAIL: did not expect '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
code() { if [ "$1" != "$2" ]; then echo "FAIL: $3: exit $1, expected $2"; fails=$((fails + 1)); fi; }
check() { if ! eval "$1"; then echo "FAIL: $2"; fails=$((fails + 1)); fi; }
export ORPO_LOG=info

# ---- point 13: make-demo's next steps and a make-demo over an earlier one -------------------------
"$bin" make-demo --out "$tmp/M" --pairs 30 >/dev/null 2>&1 || { echo "FAIL: make-demo 30"; exit 1; }
out=$("$bin" make-demo --out "$tmp/M" --pairs 12 2>&1); code $? 0 "make-demo 12 over 30"
has "$out" "--out $tmp/M/data.h5 --val-fraction 0.25 --seed 1"
has "$out" "removed 18 images of an earlier demo"
n=$(ls "$tmp/M/data/images" | wc -l)
check "[ '$n' = 12 ]" "make-demo --pairs 12 over --pairs 30: $n images in $tmp/M/data/images, expected 12"
rm -rf "$tmp/M"

# ---- point 1: --out into directories that do not exist yet ----------------------------------------
"$bin" make-demo --out "$tmp/D" --pairs 120 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }
out=$("$bin" import-model --from "$tmp/D/model" --out "$tmp/new/models/model.h5" 2>&1); code $? 0 "import-model into new dirs"
has "$out" "created the directory $tmp/new/models"
check "[ -s '$tmp/new/models/model.h5' ]" "no $tmp/new/models/model.h5"
out=$("$bin" import-data --parquet "$tmp/D/data/rlaif-v-demo.parquet" --model "$tmp/new/models/model.h5" \
    --out "$tmp/new/data/a/data.h5" --val-fraction 0.25 --seed 1 --no-progress 2>&1); code $? 0 "import-data into new dirs"
check "[ -s '$tmp/new/data/a/data.h5' ]" "no $tmp/new/data/a/data.h5"
mv "$tmp/new/models/model.h5" "$tmp/D/model.h5"
mv "$tmp/new/data/a/data.h5" "$tmp/D/data.h5"
sed "s|@DIR@|$tmp|g" "$src/tests/crash/job.yaml.in" >"$tmp/job.yaml"
job="$tmp/job.yaml"
run="$tmp/run"
out=$("$bin" validate "$job" 2>&1); code $? 0 "validate the cpu job"
has "$out" "$job: ok"
hasnt "$out" "warning"
out=$("$bin" validate "$job" --set runtime.device=cuda 2>&1); code $? 0 "validate a cuda job (a warning at most, not an error)"
if "$bin" device 2>&1 | grep -q '^built with CUDA: yes'; then
    hasnt "$out" "warning" # a CUDA build can serve it
else
    has "$out" "runtime.device: warning: cuda: this orpo-hpc cannot train on a GPU"
    has "$out" "ok (1 warning)"
fi

# ---- point 9: a missing model.path is a missing file: exit 4 ----------------------------------------
out=$("$bin" train "$job" --set model.path="$tmp/nowhere/model.h5" 2>&1); code $? 4 "train with a missing model.path"
has "$out" "No such file or directory"
has "$out" "the job names a file that does not exist"
out=$("$bin" train "$job" --set lora.rank=0 2>&1); code $? 2 "train with a bad key (still 2)"

# ---- point 4: split keys that disagree with data.h5 --------------------------------------------------
out=$("$bin" train "$job" --set data.seed=2 --set train.max_steps=1 2>&1); code $? 2 "train with data.seed 2 (data.h5: 1)"
has "$out" "data.seed: 2 in the job, 1 in data.h5"
out=$("$bin" resume "$job" --set data.val_fraction=0.1 --set data.max_tokens=9000 2>&1); code $? 2 "resume with other split keys"
has "$out" "data.val_fraction: 0.1 in the job, 0.25 in data.h5"
has "$out" "data.max_tokens: 9000 in the job, 0 in data.h5"
check "[ ! -d '$run/checkpoints' ] || [ -z \"\$(ls '$run/checkpoints')\" ]" "a refused start wrote checkpoints"

# ---- point 8: progress by time, plus every checkpoint and validation ---------------------------------
out=$("$bin" train "$job" --set train.max_steps=7 --set runtime.log_every_s=3600 2>&1); code $? 0 "train 7 steps, log every hour"
for s in 1 3 6 7; do has "$out" ": step $s/7 "; done            # first, checkpoints at 3 and 6, the end
for s in 2 4 5; do hasnt "$out" ": step $s/7 "; done
has "$out" "checkpoint step 6 written"
out=$("$bin" resume "$job" --set train.max_steps=9 --set runtime.log_every_s=0 2>&1); code $? 0 "resume, log every step"
for s in 8 9; do has "$out" ": step $s/9 "; done

# ---- point 6: the run directory and its inputs move --------------------------------------------------
mkdir -p "$tmp/project"
mv "$tmp/D" "$tmp/project/D"
mv "$run" "$tmp/project/run"
sed "s|$tmp/|$tmp/project/|g" "$job" >"$tmp/project/job.yaml"
out=$("$bin" resume "$tmp/project/job.yaml" --set train.max_steps=12 2>&1); code $? 0 "resume of a moved run"
has "$out" "resuming from $tmp/project/run/checkpoints/step-00000009.h5 (step 9,"
has "$out" "done at step 12"
hasnt "$out" "then,"
out=$("$bin" eval "$tmp/project/job.yaml" 2>&1); code $? 0 "eval of a moved run"
has "$out" "eval crash at step 12"
job="$tmp/project/job.yaml"
run="$tmp/project/run"

# ---- point 7: train --restart checks first, then moves --------------------------------------------
cp "$run/checkpoints/step-00000012.h5" "$tmp/ck12.h5"
echo "not an HDF5 file" >"$tmp/bad.h5"
out=$("$bin" train --restart "$job" --set data.path="$tmp/bad.h5" 2>&1); code $? 3 "train --restart with a bad data file"
check "cmp -s '$run/checkpoints/step-00000012.h5' '$tmp/ck12.h5'" "a failed restart moved or changed checkpoint 12"
check "[ -z \"\$(ls -d '$run'/restart-* 2>/dev/null)\" ]" "a failed restart made a restart-* directory"
check "[ -e '$run/job.yaml' ] && [ -e '$run/metrics.h5' ]" "a failed restart moved job.yaml or metrics.h5"
out=$("$bin" train --restart "$job" --set data.seed=5 2>&1); code $? 2 "train --restart with split keys that disagree"
check "[ -e '$run/checkpoints/step-00000012.h5' ]" "a refused restart moved the checkpoints"
# the same second twice: restart-<now> (and the next seconds) already hold a previous restart
for d in 0 1 2 3 4 5; do
    mkdir -p "$run/restart-$(date -u -d "+$d seconds" +%Y%m%d-%H%M%S)/checkpoints"
    touch "$run/restart-$(date -u -d "+$d seconds" +%Y%m%d-%H%M%S)/checkpoints/step-00000001.h5"
done
out=$("$bin" train --restart "$job" --set train.max_steps=2 2>&1); code $? 0 "train --restart in a second that has a restart"
has "$out" "--restart: previous checkpoints and metrics moved to $run/restart-"
aside=$(sed -n 's/.*--restart: previous checkpoints and metrics moved to \(.*\)$/\1/p' <<<"$out")
check "[ -n '$aside' ] && cmp -s '$aside/checkpoints/step-00000012.h5' '$tmp/ck12.h5'" "checkpoint 12 not kept in '$aside'"
has "$aside" "-2"

echo "$fails failed"
[ $fails -eq 0 ]
