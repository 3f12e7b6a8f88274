#!/usr/bin/env bash
# test_slurm_requeue.sh — slurm/orpo.sh on a real one-node Slurm (22.05 from Debian) that this test installs
# (slurm-wlm, munge, when missing), configures in a temporary directory (spec §3.6: proctrack/linuxproc, no
# cgroups, no systemd) and starts itself (a private munged, slurmctld, slurmd); the daemons it started are
# always stopped (trap), whatever happens. Needs root; exit 77 (skipped) when not root or when apt-get
# cannot install the packages.
#
# The demo job is calibrated to need ~45 s of training on one core, longer than one Slurm segment
# (--time=1 with --signal=B:USR1@30: the warning comes ~15-30 s after the start), and submitted:
#   - through `sbatch slurm/orpo.sh` (requeue mode): it must be signalled, checkpoint, be requeued (same job
#     id, SLURM_RESTART_COUNT+1), resume and finish; the log must show signal -> checkpoint -> requeue ->
#     resume in that order (Slurm's own --output file appended, not truncated); its final checkpoint (every tensor, optimiser moment and state value but the
#     elapsed time) and the deterministic columns of metrics.h5 (train and val tables) must equal those of
#     an uninterrupted `orpo-hpc train` of the same job run beside it, and the segments table must tell the
#     segments (steps contiguous, reasons, job id, restart counts);
#   - through `slurm/submit-chain.sh` (the fallback where scontrol requeue is forbidden; --gres=none as on a
#     CPU-only partition): several links run one after the other, the finishing link cancels the rest, and
#     the result again equals the uninterrupted run;
#   - once more, scancel'ed while it runs: it must checkpoint and NOT requeue itself (scontrol requeue would
#     succeed even on a cancelled job, so the script must tell scancel from the time limit).
# A damaged model file, outside Slurm and through sbatch: the trainer's exit 3 passed on, FAILED, not requeued.
# Without Slurm: a bad job file (exit 2) and SIGUSR1 sent to the script (forwarded: checkpoint, exit 75).
# Also: bash -n and shellcheck on slurm/*.sh, tools/slurm/*.sh and this file.
#
# Test-cluster-only settings (documented in docs/slurm.md): AuthInfo=cred_expire=10 makes a requeued job
# eligible again after ~11 s instead of ~121 s, so the whole test takes ~2-4 minutes.
# ORPO_KEEP_TMP=1 keeps the temporary directory (logs, runs) for a look afterwards.
# shellcheck disable=SC2317,SC2016  # functions run through check/trap; check's eval strings expand late
set -uo pipefail

src=${ORPO_SOURCE_DIR:?ORPO_SOURCE_DIR is not set}
bin=${ORPO_BIN:?ORPO_BIN is not set}
table=$src/tools/slurm/h5table.sh
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "test_slurm_requeue: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

# Nothing of an enclosing Slurm job (if the suite itself runs under Slurm) may leak into the scripts.
while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(SLURM_[A-Za-z0-9_]*\)=.*/\1/p')

# ---- static checks ----------------------------------------------------------------------------------------
scripts=("$src"/slurm/*.sh "$src"/tools/slurm/*.sh "$src"/tests/slurm/*.sh)
syntax_ok() { local f; for f in "$@"; do bash -n "$f" || return 1; done; }
check "bash -n on ${#scripts[@]} scripts" syntax_ok "${scripts[@]}"

if [ "$(id -u)" -ne 0 ]; then
  echo "skipped: needs root (installs and starts Slurm and munge)"
  exit 77
fi

# ---- packages (idempotent) --------------------------------------------------------------------------------
missing=()
for p in /usr/sbin/slurmctld:slurmctld /usr/sbin/slurmd:slurmd /usr/bin/sbatch:slurm-client \
         /usr/sbin/munged:munge /usr/bin/h5diff:hdf5-tools /usr/bin/h5dump:hdf5-tools /usr/bin/shellcheck:shellcheck; do
  [ -x "${p%%:*}" ] || missing+=("${p##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: slurm-wlm ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  aptlog=$(mktemp)
  if ! { apt-get -o DPkg::Lock::Timeout=300 update -qq &&
         apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends slurm-wlm "${missing[@]}"; } >"$aptlog" 2>&1; then
    tail -20 "$aptlog"
    rm -f "$aptlog"
    echo "skipped: apt-get could not install slurm-wlm ${missing[*]}"
    exit 77
  fi
  rm -f "$aptlog"
fi
check "shellcheck clean" shellcheck "${scripts[@]}"

# one instance of this test at a time on a machine (fixed ports)
exec 9>/tmp/orpo-test-slurm.lock
flock -w 900 9 || { bad "another instance of this test holds /tmp/orpo-test-slurm.lock"; finish; }

T=$(mktemp -d /tmp/orpo-slurm-XXXXXX)
chmod 755 "$T"   # munged wants every directory above its socket searchable by all
W=$T/work
mkdir -p "$W" "$T/munge" "$T/state" "$T/spool" "$T/log"
chmod 755 "$T/munge"
refpid=""

stop_daemons() {
  set +e
  if [ -s "$T/slurmctld.pid" ]; then
    # end every job of this cluster first: a job outlives slurmd otherwise
    scancel -t PENDING >/dev/null 2>&1
    local ids
    ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    # shellcheck disable=SC2086  # a list of job ids
    [ -n "$ids" ] && scancel -f -s KILL $ids >/dev/null 2>&1 && sleep 2 && scancel $ids >/dev/null 2>&1
    for _ in $(seq 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 1; done
  fi
  local f pid
  for f in slurmd.pid slurmctld.pid munge/pid; do
    [ -s "$T/$f" ] || continue
    pid=$(cat "$T/$f")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null
  done
}
cleanup() {
  set +e
  [ -n "$refpid" ] && kill "$refpid" 2>/dev/null
  stop_daemons
  if [ "${ORPO_KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show_logs() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- $f (last 40 lines)"
    grep -v -E 'orpo-hpc: step [0-9]+/' "$f" | tail -40
  done
}

# ---- demo data and the job ---------------------------------------------------------------------------------
if ! { "$bin" make-demo --out "$W/demo" --pairs 600 &&
       "$bin" import-model --from "$W/demo/model" --out "$W/demo/model.h5" &&
       "$bin" import-data --parquet "$W/demo/data/rlaif-v-demo.parquet" --model "$W/demo/model.h5" \
         --out "$W/demo/data.h5" --val-fraction 0.25 --seed 1; } >"$T/prep.log" 2>&1; then
  cat "$T/prep.log"
  bad "demo model and data"
  finish
fi

# writes $W/NAME.yaml (output_dir $W/NAME) with max_steps STEPS
write_job() {
  cat >"$W/$1.yaml" <<EOF
job:
  name: slurm-$1
  output_dir: $1
model:
  path: demo/model.h5
  quantization: nf4
lora:
  rank: 4
  alpha: 8
  dropout: 0.05
  targets: [q_proj, k_proj, v_proj, o_proj, mm_projector, lm_head]
data:
  path: demo/data.h5
  val_fraction: 0.25
  seed: 1
train:
  epochs: 100
  max_steps: $2
  micro_batch_pairs: 2
  grad_accum: 2
  lr: 1.0e-3
  schedule: cosine
  warmup_steps: 2
  orpo_beta: 0.1
  seed: 1
checkpoint:
  every_steps: 25
  keep_last: 2
eval:
  every_steps: 150
  max_pairs: 8
  samples: 1
runtime:
  device: cpu
  threads: 1
  data_parallel: none
EOF
}

# calibration: the steps that take ~40 s of training on one core (the step_time column of a 60-step run)
write_job probe 60
"$bin" train "$W/probe.yaml" >"$T/probe.log" 2>&1 || { cat "$T/probe.log"; bad "calibration run"; finish; }
per_step=$("$table" "$W/probe/metrics.h5" /train | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^step_time=/) {
                                                          t += substr($i, 11); n++ } } END { if (n) printf "%.4f", t / n }')
steps=$(awk -v p="${per_step:-0}" 'BEGIN { n = p > 0 ? int(40 / p) : 600; if (n < 300) n = 300; if (n > 4000) n = 4000;
                                           print n }')
echo "calibration: ${per_step:-?} s per step; the job runs $steps steps"
for j in rq chain canc direct bad; do write_job "$j" "$steps"; done
head -c 4096 /dev/urandom >"$W/demo/garbage.h5"
sed -i 's|path: demo/model.h5|path: demo/garbage.h5|' "$W/bad.yaml"
printf 'job:\n  name: x\n  output_dir: broken\n  no_such_key: 1\n' >"$W/broken.yaml"
ckpt=$(printf 'step-%08d.h5' "$steps")

# ---- without Slurm ------------------------------------------------------------------------------------------
cd "$W" || exit 1
export ORPO_LOG=info
bash "$src/slurm/orpo.sh" broken.yaml >"$T/broken.out" 2>&1
rc=$?
check "bad job file: exit 2, not run" [ "$rc" -eq 2 ]
check "bad job file: the error is shown" grep -q "no_such_key" "$T/broken.out"

bash "$src/slurm/orpo.sh" bad.yaml >/dev/null 2>&1
rc=$?
check "damaged model file: the trainer's exit code 3 is passed on (got $rc)" [ "$rc" -eq 3 ]
check "damaged model file: FAILED in the log, not requeued" \
  eval 'grep -q "FAILED: exit 3" bad/slurm.log && ! grep -q "orpo.sh: requeued" bad/slurm.log'
rm -rf bad

bash "$src/slurm/orpo.sh" direct.yaml >/dev/null 2>&1 &
dpid=$!
for _ in $(seq 100); do ls direct/checkpoints/step-*.h5 >/dev/null 2>&1 && break; sleep 0.1; done
kill -USR1 "$dpid"
wait "$dpid"
rc=$?
check "SIGUSR1 to the script outside Slurm: exit 75" [ "$rc" -eq 75 ]
check "SIGUSR1 forwarded: the trainer checkpointed at the signal" \
  eval 'grep -q "received SIGUSR1" direct/slurm.log && grep -q "signal 10: checkpointing at step" direct/slurm.log'

# ---- the cluster ------------------------------------------------------------------------------------------------
host=$(hostname -s)
cpus=$(nproc)
[ "$cpus" -gt 2 ] && cpus=2
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 2>/dev/null
chmod 600 "$T/munge/munge.key"
cat >"$T/slurm.conf" <<EOF
# one-node test cluster of tests/slurm/test_slurm_requeue.sh (spec section 3.6, state in $T)
ClusterName=orpotest
SlurmctldHost=$host
SlurmctldPort=26817
SlurmdPort=26818
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire=10: a requeued job may start again after ~11 s instead of ~121 s (test cluster only)
AuthInfo=socket=$T/munge/sock,cred_expire=10
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# one pretend GPU (/dev/null), so that orpo.sh's default --gres=gpu:1 is scheduled as on a GPU cluster
GresTypes=gpu
ReturnToService=2
KillWait=10
MinJobAge=3600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=2000 Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null Count=1\n' "$host" >"$T/gres.conf"
export SLURM_CONF=$T/slurm.conf

/usr/sbin/munged --socket="$T/munge/sock" --key-file="$T/munge/munge.key" --pid-file="$T/munge/pid" \
  --log-file="$T/munge/log" --seed-file="$T/munge/seed" ||
  { show_logs "$T/munge/log"; bad "munged did not start"; finish; }
/usr/sbin/slurmctld || { show_logs "$T/log/slurmctld.log"; bad "slurmctld did not start"; finish; }
/usr/sbin/slurmd || { show_logs "$T/log/slurmd.log"; bad "slurmd did not start"; finish; }
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  sleep 0.5
done
if [ "$state" != idle ]; then
  show_logs "$T/log/slurmctld.log" "$T/log/slurmd.log"
  bad "the node is '$state', expected idle"
  finish
fi
ok "one-node Slurm up ($(sinfo -V), node $host, $cpus CPUs)"

jobfield() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# waits until none of the given jobs is in the queue any more; 1 after SECONDS seconds
wait_gone() {
  local limit=$1 t=0 left
  shift
  while :; do
    left=$(squeue -h -o %i -j "$(IFS=,; echo "$*")" 2>/dev/null)
    [ -z "$left" ] && return 0
    [ "$t" -ge "$limit" ] && return 1
    sleep 2
    t=$((t + 2))
  done
}

# ---- scancel: checkpoint, no requeue ----------------------------------------------------------------------
cid=$(sbatch --parsable --time=1 --signal=B:USR1@30 -c 1 --mem=500M -o "$T/canc-%j.out" "$src/slurm/orpo.sh" canc.yaml)
for _ in $(seq 120); do ls canc/checkpoints/step-*.h5 >/dev/null 2>&1 && break; sleep 0.25; done
scancel "$cid"
if wait_gone 60 "$cid"; then
  check "scancel: job CANCELLED, never restarted" \
    eval '[ "$(jobfield "$cid" JobState)" = CANCELLED ] && [ "$(jobfield "$cid" Restarts)" = 0 ]'
  check "scancel: trainer checkpointed, script did not requeue" \
    eval 'grep -q "signal 15: checkpointing at step" canc/slurm.log && grep -q "NOT requeued: SIGTERM without the time limit" canc/slurm.log'
else
  bad "scancel'ed job $cid still in the queue after 60 s"
fi

# ---- a failing job: FAILED with the trainer's code, not requeued ------------------------------------------------
fid=$(sbatch --parsable --time=1 --signal=B:USR1@30 -c 1 --mem=500M -o "$T/bad-%j.out" "$src/slurm/orpo.sh" bad.yaml)
if wait_gone 60 "$fid"; then
  check "failing job: FAILED, exit 3, not requeued (state $(jobfield "$fid" JobState), exit $(jobfield "$fid" ExitCode))" \
    eval '[ "$(jobfield "$fid" JobState)" = FAILED ] && [ "$(jobfield "$fid" ExitCode)" = 3:0 ] && [ "$(jobfield "$fid" Restarts)" = 0 ]'
else
  bad "failing job $fid still in the queue after 60 s"
fi

# ---- requeue and chain, with the uninterrupted reference beside them --------------------------------------------
t_submit=$(date +%s)
rid=$(sbatch --parsable --time=1 --signal=B:USR1@30 -c 1 --mem=500M -o "$T/rq-%j.out" "$src/slurm/orpo.sh" rq.yaml) ||
  { bad "sbatch slurm/orpo.sh"; finish; }
mapfile -t links < <("$src/slurm/submit-chain.sh" chain.yaml 10 --time=1 --signal=B:USR1@30 -c 1 --mem=500M \
                     --gres=none -o "$T/chain-%j.out")
check "submit-chain.sh submitted 10 links" [ "${#links[@]}" -eq 10 ]
echo "submitted: requeue job $rid, chain ${links[*]}"
"$bin" train rq.yaml --set "job.output_dir=$W/ref" >"$T/ref.log" 2>&1 &
refpid=$!

if ! wait_gone 480 "$rid" "${links[@]}"; then
  bad "jobs still in the queue 480 s after submission"
  squeue
  show_logs rq/slurm.log chain/slurm.log "$T/log/slurmctld.log"
  finish
fi
wait "$refpid"
refrc=$?
refpid=""
echo "all jobs left the queue $(($(date +%s) - t_submit)) s after submission"
check "uninterrupted reference run finished" [ "$refrc" -eq 0 ]

# ---- the requeued job ---------------------------------------------------------------------------------------------
check "requeue job COMPLETED with exit 0 (state $(jobfield "$rid" JobState), exit $(jobfield "$rid" ExitCode))" \
  eval '[ "$(jobfield "$rid" JobState)" = COMPLETED ] && [ "$(jobfield "$rid" ExitCode)" = 0:0 ]'
restarts=$(jobfield "$rid" Restarts)
check "requeue job was requeued ($restarts times)" [ "${restarts:-0}" -ge 1 ]
# --open-mode=append: Slurm's own file still holds the first segment's line after the restarts
check "Slurm's output file kept every segment (--open-mode=append): restart 0 and restart 1 lines" \
  eval 'grep -q "job $rid restart 0: log in" "$T/rq-$rid.out" && grep -q "job $rid restart 1: log in" "$T/rq-$rid.out"'
# the cycle, in this order: warning signal -> checkpoint -> exit 75 -> scontrol requeue -> restart 1 -> resume -> done
cycle=$(awk -v id="$rid" '
  s == 0 && /orpo.sh: received SIGUSR1/ { s = 1; next }
  s == 1 && /signal 10: checkpointing at step/ { s = 2; next }
  s == 2 && /orpo.sh: trainer exit 75/ { s = 3; next }
  s == 3 && $0 ~ ("orpo.sh: requeued " id " ") { s = 4; next }
  s == 4 && $0 ~ ("segment start: job " id " restart 1,") { s = 5; next }
  s == 5 && /resuming from .*checkpoints\/step-/ { s = 6; next }
  s == 6 && /orpo.sh: trainer exit 0: done/ { s = 7 }
  END { print s }' rq/slurm.log)
check "log shows signal -> checkpoint -> exit 75 -> requeue -> restart 1 -> resume -> done (reached $cycle of 7)" \
  [ "$cycle" = 7 ]
echo "segments of the requeued job:"
grep -E 'orpo.sh: (segment start|received|trainer exit|requeued)' rq/slurm.log | sed 's/^/  /'

same_ckpt() { h5diff --exclude-path /config --exclude-path /manifest --exclude-path /state/elapsed_s "$1" "$2"; }
x_train=(-x step_time -x tokens_per_s -x mem_peak -x segment)
same_table() { # DIR DATASET COLUMNS-TO-SKIP...
  local d=$1 ds=$2
  shift 2
  local a b
  a=$("$table" "$d/metrics.h5" "$ds" "$@") && b=$("$table" ref/metrics.h5 "$ds" "$@") && [ -n "$a" ] && [ "$a" = "$b" ]
}
check "requeue: final checkpoint equals the uninterrupted run's (params, adam_m, adam_v, state)" \
  same_ckpt "rq/checkpoints/$ckpt" "ref/checkpoints/$ckpt"
check "requeue: metrics train table equals the uninterrupted run's (all but step_time, tokens_per_s, mem_peak)" \
  same_table rq /train "${x_train[@]}"
check "requeue: metrics val table equals the uninterrupted run's" same_table rq /val -x segment
check "requeue: one train row per step, 1..$steps" \
  eval '[ "$("$table" rq/metrics.h5 /train | awk -v n="$steps" "{ if (\$1 != \"step=\" NR) bad = 1 } END { print (NR == n && !bad) }")" = 1 ]'

# segments: contiguous steps, reasons, job ids, restart counts. MODE requeue: one job id, restart counts
# 0,1,2,...; MODE chain: increasing job ids, restart count 0.
segments_ok() { # DIR MODE JOBID
  "$table" "$1/metrics.h5" /segments -x start_time -x end_time -x host | awk -v mode="$2" -v id="$3" -v n="$steps" '
    { delete f; for (i = 1; i <= NF; i++) { p = index($i, "="); f[substr($i, 1, p - 1)] = substr($i, p + 1) }
      k = NR
      if (f["segment"] != k) err = err " segment" k "-numbered-" f["segment"]
      if (f["start_step"] != (k == 1 ? 0 : prev_end)) err = err " segment" k "-starts-at-" f["start_step"]
      if (f["checkpoint_step"] != f["end_step"]) err = err " segment" k "-not-checkpointed-at-its-end"
      reason[k] = f["reason"]; prev_end = f["end_step"]
      if (mode == "requeue") {
        if (f["slurm_job_id"] != id) err = err " segment" k "-job-" f["slurm_job_id"]
        rc = f["restart_count"] + 0
        if ((k == 1 && rc != 0) || (k > 1 && rc <= prev_rc)) err = err " segment" k "-restart-" rc
        prev_rc = rc
      } else {
        if (f["slurm_job_id"] + 0 <= prev_id || f["restart_count"] != 0) err = err " segment" k "-job-" f["slurm_job_id"]
        prev_id = f["slurm_job_id"] + 0
      }
    }
    END {
      if (NR < 2) err = err " only-" NR "-segment(s)"
      for (k = 1; k < NR; k++) if (reason[k] != "\"interrupted\"") err = err " segment" k "-reason-" reason[k]
      if (reason[NR] != "\"done\"") err = err " last-segment-reason-" reason[NR]
      if (prev_end != n) err = err " ends-at-" prev_end
      if (err != "") { print "segments:" err > "/dev/stderr"; exit 1 }
    }'
}
check "requeue: metrics.h5 segments (contiguous, interrupted... done, job $rid, restart counts)" segments_ok rq requeue "$rid"
"$table" rq/metrics.h5 /segments -x host | sed 's/^/  /'

# ---- the chain --------------------------------------------------------------------------------------------------
ran=0
cancelled=0
completed=0
for l in "${links[@]}"; do
  st=$(jobfield "$l" JobState)
  case $st in
    COMPLETED) completed=$((completed + 1)); ran=$((ran + 1)) ;;
    CANCELLED) if [ "$(jobfield "$l" RunTime)" = 00:00:00 ]; then cancelled=$((cancelled + 1)); else ran=$((ran + 1)); fi ;;
    *) ran=$((ran + 1)) ;;
  esac
done
echo "chain: $ran links ran, $cancelled cancelled before they started"
check "chain: every link COMPLETED or cancelled while pending ($completed completed + $cancelled cancelled of 10)" \
  [ $((completed + cancelled)) -eq 10 ]
check "chain: at least 2 links ran, the rest were cancelled by the finishing link" \
  eval '[ "$ran" -ge 2 ] && [ "$cancelled" -ge 1 ] && grep -q "chain: done; cancelling the links still pending" chain/slurm.log'
check "chain: never requeued, never called scontrol requeue" \
  eval '! grep -q "orpo.sh: requeued" chain/slurm.log && [ "$(jobfield "${links[0]}" Restarts)" = 0 ]'
check "chain: final checkpoint equals the uninterrupted run's" same_ckpt "chain/checkpoints/$ckpt" "ref/checkpoints/$ckpt"
check "chain: metrics train table equals the uninterrupted run's" same_table chain /train "${x_train[@]}"
check "chain: metrics.h5 segments (one per link, contiguous, interrupted... done)" segments_ok chain chain 0

if [ "$fail" -gt 0 ]; then
  show_logs rq/slurm.log chain/slurm.log "$T/log/slurmctld.log" "$T/log/slurmd.log"
fi
finish
