# shellcheck shell=bash
# slurm_cluster.sh — what the real-Slurm tests (tests/slurm/test_*.sh) share; sourced by them, not a test itself.
# A one-node Slurm (22.05 from Debian) on this machine, configured in a temporary directory (spec §3.6:
# proctrack/linuxproc, no cgroups, no systemd) and started by the test (a private munged, slurmctld, slurmd),
# always stopped again (trap), whatever happens.
#
#   sc_init NAME              src, bin, table (tools/slurm/h5table.sh); the counters of ok / bad / check; finish
#                             prints "NAME: P passed, F failed" and exits 0 only when none failed. Unsets the
#                             SLURM_* variables of an enclosing job.
#   sc_need_root_and_packages exit 77 (skipped, with the reason) when not root or when apt-get cannot install
#                             slurm-wlm, munge, hdf5-tools, shellcheck (installed when missing; idempotent)
#   sc_setup                  one instance of a Slurm test at a time (fixed ports: /tmp/orpo-test-slurm.lock);
#                             T (temporary directory, removed at exit unless ORPO_KEEP_TMP=1), W=$T/work; the trap
#                             that stops the daemons and any job of the cluster
#   sc_demo                   demo model and data in $W/demo (600 pairs); 1 on failure (the log is shown)
#   sc_write_job NAME STEPS [GRAD_ACCUM [DATA_PARALLEL]]
#                             $W/NAME.yaml (output_dir NAME, 2 pairs a micro-batch, grad_accum 2, data_parallel none)
#   sc_start_cluster          munged, slurmctld, slurmd with the node idle (cred_expire=10: a requeued job may
#                             start again after ~11 s; one pretend GPU); exports SLURM_CONF; 1 on failure
#   jobfield ID FIELD         a field of `scontrol show job`
#   wait_gone SECONDS ID...   0 once none of the jobs is in the queue, 1 after SECONDS
#   show_logs FILE...         the last 40 lines of each (progress lines left out)
#   same_ckpt A B             h5diff of two checkpoints: every tensor, moment and state value but the elapsed time
#                             and the world size (the one value that differs between world sizes)
#   same_table DIR DATASET [-x COLUMN]...  DIR/metrics.h5's table equals ref/metrics.h5's (x_train: the columns
#                             of /train that are times or memory, and the segment number)
#   segments_ok DIR MODE JOBID STEPS  the segments table: contiguous, interrupted... done, ends at STEPS; MODE
#                             requeue (one job id, restart counts 0, 1, ...) or chain (increasing job ids)
#   requeue_cycle JOBID LOG   how far LOG (OUTPUT_DIR/slurm.log) got through signal -> checkpoint -> exit 75 ->
#                             scontrol requeue -> restart 1 -> resume -> done (7: all of it)
#   refpid                    a background process the test started (killed at exit when set)
# shellcheck disable=SC2034  # src, bin, table, W, refpid, x_train: used by the tests that source this file

sc_init() {
  sc_name=$1
  src=${ORPO_SOURCE_DIR:?ORPO_SOURCE_DIR is not set}
  bin=${ORPO_BIN:?ORPO_BIN is not set}
  table=$src/tools/slurm/h5table.sh
  pass=0
  fail=0
  refpid=""
  # Nothing of an enclosing Slurm job (if the suite itself runs under Slurm) may leak into the scripts.
  local v
  while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(SLURM_[A-Za-z0-9_]*\)=.*/\1/p')
}
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "$sc_name: $pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }

sc_need_root_and_packages() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: needs root (installs and starts Slurm and munge)"
    exit 77
  fi
  local missing=() p aptlog
  for p in /usr/sbin/slurmctld:slurmctld /usr/sbin/slurmd:slurmd /usr/bin/sbatch:slurm-client \
           /usr/sbin/munged:munge /usr/bin/h5diff:hdf5-tools /usr/bin/h5dump:hdf5-tools /usr/bin/shellcheck:shellcheck; do
    [ -x "${p%%:*}" ] || missing+=("${p##*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
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
}

sc_setup() {
  exec 9>/tmp/orpo-test-slurm.lock
  flock -w 900 9 || { bad "another instance of a Slurm test holds /tmp/orpo-test-slurm.lock"; finish; }
  T=$(mktemp -d /tmp/orpo-slurm-XXXXXX)
  chmod 755 "$T"   # munged wants every directory above its socket searchable by all
  W=$T/work
  mkdir -p "$W" "$T/munge" "$T/state" "$T/spool" "$T/log"
  chmod 755 "$T/munge"
  trap sc_cleanup EXIT
  trap 'exit 130' INT TERM
}

# shellcheck disable=SC2317  # called through the trap
sc_stop_daemons() {
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
# shellcheck disable=SC2317  # called through the trap
sc_cleanup() {
  set +e
  [ -n "$refpid" ] && kill "$refpid" 2>/dev/null
  sc_stop_daemons
  if [ "${ORPO_KEEP_TMP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}

show_logs() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "---- $f (last 40 lines)"
    grep -v -E 'orpo-hpc: step [0-9]+/' "$f" | tail -40
  done
}

sc_demo() {
  if ! { "$bin" make-demo --out "$W/demo" --pairs 600 &&
         "$bin" import-model --from "$W/demo/model" --out "$W/demo/model.h5" &&
         "$bin" import-data --parquet "$W/demo/data/rlaif-v-demo.parquet" --model "$W/demo/model.h5" \
           --out "$W/demo/data.h5" --val-fraction 0.25 --seed 1; } >"$T/prep.log" 2>&1; then
    cat "$T/prep.log"
    return 1
  fi
}

sc_write_job() {
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
  grad_accum: ${3:-2}
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
  data_parallel: ${4:-none}
EOF
}

sc_start_cluster() {
  local host cpus state
  host=$(hostname -s)
  cpus=$(nproc)
  [ "$cpus" -gt 2 ] && cpus=2
  dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 2>/dev/null
  chmod 600 "$T/munge/munge.key"
  cat >"$T/slurm.conf" <<EOF
# one-node test cluster of tests/slurm/$sc_name.sh (spec section 3.6, state in $T)
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
    { show_logs "$T/munge/log"; bad "munged did not start"; return 1; }
  /usr/sbin/slurmctld || { show_logs "$T/log/slurmctld.log"; bad "slurmctld did not start"; return 1; }
  /usr/sbin/slurmd || { show_logs "$T/log/slurmd.log"; bad "slurmd did not start"; return 1; }
  state=""
  for _ in $(seq 60); do
    state=$(sinfo -h -N -o %T 2>/dev/null | head -1)
    [ "$state" = idle ] && break
    sleep 0.5
  done
  if [ "$state" != idle ]; then
    show_logs "$T/log/slurmctld.log" "$T/log/slurmd.log"
    bad "the node is '$state', expected idle"
    return 1
  fi
  ok "one-node Slurm up ($(sinfo -V), node $host, $cpus CPUs)"
}

jobfield() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

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

same_ckpt() {
  h5diff --exclude-path /config --exclude-path /manifest --exclude-path /state/elapsed_s \
    --exclude-path /state/world_size "$1" "$2"
}

x_train=(-x step_time -x tokens_per_s -x mem_peak -x segment)
same_table() { # DIR DATASET COLUMNS-TO-SKIP... (against ref/metrics.h5)
  local d=$1 ds=$2
  shift 2
  local a b
  a=$("$table" "$d/metrics.h5" "$ds" "$@") && b=$("$table" ref/metrics.h5 "$ds" "$@") && [ -n "$a" ] && [ "$a" = "$b" ]
}
# segments: contiguous steps, reasons, job ids, restart counts. MODE requeue: one job id, restart counts
# 0,1,2,...; MODE chain: increasing job ids, restart count 0.
segments_ok() { # DIR MODE JOBID STEPS
  "$table" "$1/metrics.h5" /segments -x start_time -x end_time -x host | awk -v mode="$2" -v id="$3" -v n="$4" '
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
# the cycle, in this order: warning signal -> checkpoint -> exit 75 -> scontrol requeue -> restart 1 -> resume -> done
requeue_cycle() { # JOBID LOG: how far LOG got, 7 = the whole cycle
  awk -v id="$1" '
  s == 0 && /orpo.sh: received SIGUSR1/ { s = 1; next }
  s == 1 && /signal 10: checkpointing at step/ { s = 2; next }
  s == 2 && /orpo.sh: trainer exit 75/ { s = 3; next }
  s == 3 && $0 ~ ("orpo.sh: requeueing " id ": scontrol requeue") { s = 4; next }
  s == 4 && $0 ~ ("segment start: job " id " restart 1,") { s = 5; next }
  s == 5 && /resuming from .*checkpoints\/step-/ { s = 6; next }
  s == 6 && /orpo.sh: trainer exit 0: done/ { s = 7 }
  END { print s }' "$2"
}
