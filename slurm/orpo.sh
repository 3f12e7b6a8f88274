#!/usr/bin/env bash
# orpo.sh — the Slurm batch script of orpo-hpc: runs `orpo-hpc resume JOB.yaml` until the job is done,
# across time limits, preemptions and node failures, without babysitting (docs/slurm.md).
#
#   sbatch slurm/orpo.sh JOB.yaml [--set key.path=value ...]
#   sbatch --time=4:00:00 --signal=B:USR1@600 slurm/orpo.sh JOB.yaml     # sbatch options override #SBATCH
#   sbatch -p cpu --gres=none -c 16 slurm/orpo.sh JOB.yaml --set runtime.device=cpu   # a CPU-only partition
#   sbatch -N 2 --ntasks-per-node=4 --gres=gpu:4 -c 8 slurm/orpo.sh JOB.yaml   # 2 nodes x 4 GPUs: 8 ranks (NCCL)
#   slurm/submit-chain.sh JOB.yaml N     # sites that forbid `scontrol requeue`: N singleton links
#
# One segment (one run of this script):
#   1. `orpo-hpc validate --print-config` checks the job (exit 2 at once on errors: nothing is requeued) and
#      gives the resolved job.output_dir; this script's own output then goes to OUTPUT_DIR/slurm.log (appended
#      by every segment, requeue and chain link; Slurm's --output file gets one line pointing there, plus
#      Slurm's own messages).
#   2. `orpo-hpc resume JOB.yaml` runs in the background while the shell waits, so that its traps run at once.
#      `--signal=B:USR1@T` makes Slurm send SIGUSR1 to this batch shell (only to it, spec §3.1) T seconds (up
#      to 60 s more) before the time limit; the trap forwards it to the trainer, which finishes its current
#      step, writes a checkpoint and exits 75. SIGTERM (time limit reached, scancel, preemption) and SIGINT
#      are forwarded the same way; Slurm also sends SIGTERM to the trainer itself and SIGKILL KillWait
#      seconds later (30 s by default), so the warning signal is the one that matters.
#      Why B: and no srun: the trainer is one process on one node, so no job step is needed; the shell must
#      learn that a signal came anyway (SIGUSR1 means "requeue", SIGTERM may mean "cancelled"), and with B:
#      it is the shell that gets it. (Without B:, Slurm signals the job steps only, never the batch shell,
#      and a trainer started without srun is no step: it would never hear the warning.)
#      Several tasks (data parallel: --ntasks > 1, e.g. one per GPU on several nodes): the trainer runs as one job
#      step, `srun --kill-on-bad-exit=1 orpo-hpc resume ...`, one process per task; the shell passes the signal to
#      srun, which passes it to every task, and the ranks agree on it at the next step (docs/parallel.md). Each
#      task takes the GPU SLURM_LOCALID % (GPUs it sees); NCCL's id goes through a file in job.output_dir (on a
#      file system every node sees). CPU ranks (runtime.data_parallel: mpi) need MPI to see them:
#      ORPO_SRUN_ARGS=--mpi=pmix. A rank that dies ends the step (--kill-on-bad-exit); one that hangs makes the
#      others fail within runtime.dist_timeout_s, naming it.
#   3. The trainer's exit status decides:
#        0   done: exit 0 (in a chain, the links still pending are cancelled).
#        75  interrupted and checkpointed: `scontrol requeue` (same job id, SLURM_RESTART_COUNT + 1; the next
#            segment starts after Slurm's requeue delay, ~2 min by default) — unless the interruption was a
#            SIGTERM that is not the time limit (scancel, preemption: Slurm requeues preempted jobs itself),
#            or, in a chain, when a later link is pending. A trainer killed by the forwarded signal before it
#            could install its handlers counts as 75 (its checkpoints are atomic: nothing is lost but the
#            steps since the last one).
#        else the job failed: the code is explained in the log and this script exits with it (the job shows
#            FAILED); it is never requeued. 2 bad job or arguments, 3 bad model or data file, 4 I/O failure,
#            1 internal error, 128+N killed by signal N (137: SIGKILL, e.g. out of memory).
#      A segment that ends 75 without a newer checkpoint than it started from is a stall; after
#      ORPO_MAX_STALLS (3) stalls in a row the job stops requeueing itself (the warning comes too early for
#      the time limit: raise --time or lower @T).
#   Node failures: with --requeue, Slurm requeues the job itself; the next segment resumes from the newest
#   valid checkpoint, and metrics.h5 marks the lost segment "crashed".
#
# Environment (sbatch passes the submitting shell's environment on):
#   ORPO_BIN          the orpo-hpc binary (default: orpo-hpc on PATH, else SUBMIT_DIR/build/release/orpo-hpc)
#   ORPO_SLURM_MODE   requeue (default) | chain (set by submit-chain.sh: never calls scontrol requeue)
#   ORPO_MAX_STALLS   segments in a row without progress before giving up (default 3)
#   ORPO_SRUN_ARGS    extra srun options of the trainer's step when the job has several tasks (e.g. --mpi=pmix)
#
# Defaults below are for one 8 GB GPU; change them here or on the sbatch command line.
#SBATCH --job-name=orpo
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out

set -uo pipefail

say() { printf '%s orpo.sh: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*"; }

# Signals: trapped from the first line (bash's default for SIGUSR1 would end the script), remembered in
# `got`, and passed on to the trainer once it runs (see the segment below).
child=""
got=""
ended=""
# shellcheck disable=SC2317  # called from the traps below
on_signal() {
  if [ -n "$ended" ]; then
    say "received SIG$1 after the trainer ended (Slurm is ending this segment)"
    return
  fi
  got=$1
  if [ -n "$child" ]; then
    say "received SIG$1; passing it to the trainer (pid $child)"
    kill -s "$1" "$child" 2>/dev/null
  else
    say "received SIG$1 before the trainer started"
  fi
}
trap 'on_signal USR1' USR1
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

if [ $# -lt 1 ] || [ "${1:0:1}" = "-" ]; then
  say "usage: sbatch [SBATCH_OPTIONS] slurm/orpo.sh JOB.yaml [--set key.path=value ...]"
  exit 2
fi
job=$1
shift

# ---- the binary and the job ----------------------------------------------------------------------------
orpo=${ORPO_BIN:-}
if [ -z "$orpo" ]; then
  if command -v orpo-hpc >/dev/null 2>&1; then
    orpo="orpo-hpc"
  elif [ -x "${SLURM_SUBMIT_DIR:-.}/build/release/orpo-hpc" ]; then
    orpo=${SLURM_SUBMIT_DIR:-.}/build/release/orpo-hpc
  else
    say "orpo-hpc not found: put it on PATH, or set ORPO_BIN=/path/to/orpo-hpc before sbatch"
    exit 2
  fi
fi

if ! config=$("$orpo" validate --print-config "$job" "$@"); then
  say "$job has errors (listed above): not run, not requeued"
  exit 2
fi
# job.output_dir of the resolved configuration (an absolute path, double-quoted by --print-config)
outdir=$(awk '/^job:/ { injob = 1; next } /^[^ #]/ { injob = 0 }
              injob && $1 == "output_dir:" { sub(/^[^:]*:[ ]*"/, ""); sub(/"[ ]*(#.*)?$/, ""); print; exit }' \
         <<<"$config")
if [ -z "$outdir" ] || ! mkdir -p "$outdir"; then
  say "cannot find or create job.output_dir of $job (got '$outdir')"
  exit 4
fi
log=$outdir/slurm.log
say "job ${SLURM_JOB_ID:-(not under Slurm)} restart ${SLURM_RESTART_COUNT:-0}: log in $log"
exec >>"$log" 2>&1

mode=${ORPO_SLURM_MODE:-requeue}
max_stalls=${ORPO_MAX_STALLS:-3}
stallfile=$outdir/.slurm-stalls
jobid=${SLURM_JOB_ID:-}
# the id that `scontrol requeue` needs: an array task is ARRAYJOB_TASK, not its own SLURM_JOB_ID
target=$jobid
if [ -n "${SLURM_ARRAY_JOB_ID:-}" ] && [ -n "${SLURM_ARRAY_TASK_ID:-}" ]; then
  target=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
fi
me=$(id -un)

# step of the newest checkpoint file in OUTPUT_DIR/checkpoints (-1 when there is none)
latest_step() {
  local f s best=-1
  for f in "$outdir"/checkpoints/step-*.h5; do
    [ -e "$f" ] || continue
    s=${f##*/step-}
    s=${s%.h5}
    [[ $s =~ ^[0-9]+$ ]] || continue
    s=$((10#$s))
    [ "$s" -gt "$best" ] && best=$s
  done
  echo "$best"
}

explain() {
  case $1 in
    0) echo "done" ;;
    1) echo "internal error (a bug: please report it with this log)" ;;
    2) echo "bad job file or arguments" ;;
    3) echo "bad model or data file (the message above names the file and the place)" ;;
    4) echo "I/O failure: disk full, permissions or a missing file (data parallel: or a rank that did not answer)" ;;
    75) echo "interrupted and checkpointed" ;;
    130) echo "aborted by a second SIGINT" ;;
    *) if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128)) ($(kill -l $(($1 - 128)) 2>/dev/null || echo '?'))"
       else echo "unknown exit code"; fi ;;
  esac
}

# ---- the segment -------------------------------------------------------------------------------------------
start_step=$(latest_step)
say "----------------------------------------------------------------------------------------------------"
say "segment start: job ${jobid:-none}${SLURM_ARRAY_JOB_ID:+ (array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID:-})}" \
    "restart ${SLURM_RESTART_COUNT:-0}, name ${SLURM_JOB_NAME:-?}, node ${SLURMD_NODENAME:-$(hostname -s)}," \
    "partition ${SLURM_JOB_PARTITION:-?}, cpus ${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-?}}," \
    "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}, mode $mode"
if [ -n "$jobid" ] && command -v squeue >/dev/null 2>&1; then
  say "time limit $(squeue -h -j "$jobid" -o '%l, time left %L' 2>/dev/null)"
fi
say "job $job -> $outdir; newest checkpoint: step $start_step; running: $orpo resume $job $*"

if [ -n "$got" ]; then
  # the warning (or a cancellation) came before the trainer started: nothing to checkpoint
  say "SIG$got came before the trainer started: not starting it"
  rc=75
else
  ntasks=${SLURM_NTASKS:-1}
  if [ "$ntasks" -gt 1 ]; then
    # one process per task (GPU); srun no longer passes --cpus-per-task on by itself (Slurm >= 22.05)
    say "data parallel: $ntasks tasks on ${SLURM_JOB_NUM_NODES:-?} node(s) (${SLURM_JOB_NODELIST:-?}): srun"
    # shellcheck disable=SC2086  # ORPO_SRUN_ARGS holds several options
    srun --kill-on-bad-exit=1 ${SLURM_CPUS_PER_TASK:+--cpus-per-task=$SLURM_CPUS_PER_TASK} ${ORPO_SRUN_ARGS:-} \
      "$orpo" resume "$job" "$@" &
  else
    "$orpo" resume "$job" "$@" &
  fi
  child=$!
  # a signal that came between the fork and `child=$!`
  if [ -n "$got" ]; then kill -s "$got" "$child" 2>/dev/null; fi
  # `wait` returns early (status > 128) whenever a trap runs; wait again until the trainer has really
  # ended, then once more for its status (bash keeps the status of a finished background process)
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  wait "$child"
  rc=$?
  if [ -n "$got" ] && [ "$rc" -eq $((128 + $(kill -l "$got"))) ]; then
    say "the trainer was killed by SIG$got before it could catch it; resuming from the last checkpoint"
    rc=75
  fi
fi
ended=1
end_step=$(latest_step)
say "trainer exit $rc: $(explain "$rc"); newest checkpoint: step $end_step (segment started at $start_step)"

requeue_or_stop() {
  # stalls: segments in a row that ended 75 without a newer checkpoint
  local stalls=0
  if [ "$end_step" -gt "$start_step" ]; then
    rm -f "$stallfile"
  else
    stalls=$(( $(cat "$stallfile" 2>/dev/null || echo 0) + 1 ))
    echo "$stalls" >"$stallfile"
    say "no progress in this segment ($stalls in a row; giving up at $max_stalls)"
    if [ "$stalls" -ge "$max_stalls" ]; then
      say "NOT requeued: $stalls segments without a new checkpoint; the warning signal comes too early for" \
          "the time limit (raise --time or lower --signal=B:USR1@T), then: sbatch slurm/orpo.sh $job"
      rm -f "$stallfile"
      exit 75
    fi
  fi
  if [ "$got" = TERM ] || [ "$got" = INT ]; then
    local reason
    reason=$(squeue -h -j "$jobid" -o '%r' 2>/dev/null)
    if [ "$reason" != TimeLimit ]; then
      say "NOT requeued: SIG$got without the time limit (reason '${reason:-?}'): cancelled or preempted" \
          "(Slurm requeues preempted jobs itself). Continue with: sbatch slurm/orpo.sh $job"
      exit 75
    fi
    say "the time limit was reached before the warning signal (lower --signal=B:USR1@T?)"
  fi
  if [ "$mode" = chain ]; then
    local pending
    pending=$(squeue -h -u "$me" -n "${SLURM_JOB_NAME:-}" -t PENDING -o '%i' 2>/dev/null | grep -vx "$jobid" | tr '\n' ' ')
    if [ -n "$pending" ]; then
      say "chain: the next link continues (pending: $pending)"
      exit 0
    fi
    say "NOT done and no link left in the chain: submit more with slurm/submit-chain.sh $job N"
    exit 75
  fi
  if [ -z "$target" ]; then
    say "not running under Slurm: run this script again to continue"
    exit 75
  fi
  local out
  # said before the call: the requeue ends this segment (SIGTERM, then SIGKILL after KillWait), which on a busy
  # controller can come before `scontrol` returns, so a line after it may never be written
  say "requeueing $target: scontrol requeue (restart $(( ${SLURM_RESTART_COUNT:-0} + 1 )) follows after Slurm's" \
      "requeue delay)"
  if out=$(scontrol requeue "$target" 2>&1); then
    say "requeued $target"
    exit 0
  fi
  say "NOT requeued: scontrol requeue $target failed: $out"
  say "if this site forbids requeue, use: slurm/submit-chain.sh $job N; to continue now: sbatch slurm/orpo.sh $job"
  exit 75
}

case $rc in
  0)
    rm -f "$stallfile"
    if [ "$mode" = chain ] && [ -n "${SLURM_JOB_NAME:-}" ]; then
      pending=$(squeue -h -u "$me" -n "$SLURM_JOB_NAME" -t PENDING -o '%i' 2>/dev/null | grep -vx "$jobid" | tr '\n' ' ')
      if [ -n "$pending" ]; then
        say "chain: done; cancelling the links still pending: $pending"
        scancel -u "$me" -n "$SLURM_JOB_NAME" -t PENDING
      fi
    fi
    say "job finished"
    exit 0
    ;;
  75)
    requeue_or_stop
    ;;
  *)
    say "FAILED: exit $rc ($(explain "$rc")); not requeued. Fix the cause, then: sbatch slurm/orpo.sh $job"
    exit "$rc"
    ;;
esac
