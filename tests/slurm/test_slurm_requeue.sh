#!/usr/bin/env bash
# test_slurm_requeue.sh — slurm/orpo.sh on a real one-node Slurm (22.05 from Debian) that this test installs
# (slurm-wlm, munge, when missing), configures in a temporary directory and starts itself (tests/slurm/
# slurm_cluster.sh, shared with test_slurm_two_tasks.sh); the daemons it started are always stopped (trap),
# whatever happens. Needs root; exit 77 (skipped) when not root or when apt-get cannot install the packages.
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
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

# shellcheck source=slurm_cluster.sh
. "${ORPO_SOURCE_DIR:?ORPO_SOURCE_DIR is not set}/tests/slurm/slurm_cluster.sh"
sc_init test_slurm_requeue

# ---- static checks ----------------------------------------------------------------------------------------
scripts=("$src"/slurm/*.sh "$src"/tools/slurm/*.sh "$src"/tests/slurm/*.sh)
syntax_ok() { local f; for f in "$@"; do bash -n "$f" || return 1; done; }
check "bash -n on ${#scripts[@]} scripts" syntax_ok "${scripts[@]}"

sc_need_root_and_packages
check "shellcheck clean" shellcheck -x "${scripts[@]}"
sc_setup

# ---- demo data and the job ---------------------------------------------------------------------------------
sc_demo || { bad "demo model and data"; finish; }

# calibration: the steps that take ~40 s of training on one core (the step_time column of a 60-step run)
sc_write_job probe 60
"$bin" train "$W/probe.yaml" >"$T/probe.log" 2>&1 || { cat "$T/probe.log"; bad "calibration run"; finish; }
per_step=$("$table" "$W/probe/metrics.h5" /train | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^step_time=/) {
                                                          t += substr($i, 11); n++ } } END { if (n) printf "%.4f", t / n }')
steps=$(awk -v p="${per_step:-0}" 'BEGIN { n = p > 0 ? int(40 / p) : 600; if (n < 300) n = 300; if (n > 4000) n = 4000;
                                           print n }')
echo "calibration: ${per_step:-?} s per step; the job runs $steps steps"
for j in rq chain canc direct bad; do sc_write_job "$j" "$steps"; done
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
  eval 'grep -q "FAILED: exit 3" bad/slurm.log && ! grep -q "orpo.sh: requeue" bad/slurm.log'
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
sc_start_cluster || finish

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
cycle=$(requeue_cycle "$rid" rq/slurm.log)
check "log shows signal -> checkpoint -> exit 75 -> requeue -> restart 1 -> resume -> done (reached $cycle of 7)" \
  [ "$cycle" = 7 ]
echo "segments of the requeued job:"
grep -E 'orpo.sh: (segment start|received|trainer exit|requeue)' rq/slurm.log | sed 's/^/  /'

check "requeue: final checkpoint equals the uninterrupted run's (params, adam_m, adam_v, state)" \
  same_ckpt "rq/checkpoints/$ckpt" "ref/checkpoints/$ckpt"
check "requeue: metrics train table equals the uninterrupted run's (all but step_time, tokens_per_s, mem_peak)" \
  same_table rq /train "${x_train[@]}"
check "requeue: metrics val table equals the uninterrupted run's" same_table rq /val -x segment
check "requeue: one train row per step, 1..$steps" \
  eval '[ "$("$table" rq/metrics.h5 /train | awk -v n="$steps" "{ if (\$1 != \"step=\" NR) bad = 1 } END { print (NR == n && !bad) }")" = 1 ]'

check "requeue: metrics.h5 segments (contiguous, interrupted... done, job $rid, restart counts)" segments_ok rq requeue "$rid" "$steps"
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
  eval '! grep -q "orpo.sh: requeue" chain/slurm.log && [ "$(jobfield "${links[0]}" Restarts)" = 0 ]'
check "chain: final checkpoint equals the uninterrupted run's" same_ckpt "chain/checkpoints/$ckpt" "ref/checkpoints/$ckpt"
check "chain: metrics train table equals the uninterrupted run's" same_table chain /train "${x_train[@]}"
check "chain: metrics.h5 segments (one per link, contiguous, interrupted... done)" segments_ok chain chain 0 "$steps"

if [ "$fail" -gt 0 ]; then
  show_logs rq/slurm.log chain/slurm.log "$T/log/slurmctld.log" "$T/log/slurmd.log"
fi
finish
