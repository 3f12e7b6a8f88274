#!/usr/bin/env bash
# test_slurm_two_tasks.sh — data parallel under a real Slurm (issue 13, docs/parallel.md, docs/slurm.md): a 2-task
# CPU job (`sbatch --ntasks=2 slurm/orpo.sh`, runtime.data_parallel: mpi, ORPO_SRUN_ARGS=--mpi=pmix) on the
# one-node Slurm of tests/slurm/slurm_cluster.sh. The script must run the trainer as one srun step of two ranks;
# SIGUSR1 to the batch shell mid-run (what --signal=B:USR1@T sends before the time limit; here `scancel --batch
# --signal=USR1` right after the first checkpoint, so that the run stays a few seconds long) must reach both ranks
# through srun: they checkpoint at the same step, exit 75, the script requeues the job, and the restarted job
# resumes with two ranks and finishes. Its final checkpoint (every tensor, moment and state value but the elapsed
# time; world_size 2) and metrics (train table but times and memory, val table) must equal, bit for bit, those of
# an uninterrupted single process with grad_accum 2 run beside it; the segments table tells the two segments.
# Skipped (exit 77) where test_slurm_requeue.sh is (not root, apt-get cannot install Slurm), and when this
# orpo-hpc was built without MPI (as the dist tests). ~1-2 minutes. ORPO_KEEP_TMP=1 keeps the temporary directory.
# shellcheck disable=SC2016  # check's eval strings expand late
# shellcheck source-path=SCRIPTDIR
set -uo pipefail

# shellcheck source=slurm_cluster.sh
. "${ORPO_SOURCE_DIR:?ORPO_SOURCE_DIR is not set}/tests/slurm/slurm_cluster.sh"
sc_init test_slurm_two_tasks

sc_need_root_and_packages
# grep without -q: reading all of ldd's output, no SIGPIPE for ldd, whose failure pipefail would report
if ! ldd "$bin" 2>/dev/null | grep libmpi >/dev/null; then
  echo "skipped: $bin was built without MPI (install libopenmpi-dev and openmpi-bin, then rebuild)"
  exit 77
fi
sc_setup
t_start=$(date +%s)

# 100 steps of 2 pairs per rank; a checkpoint every 10 steps, the signal right after the first one
steps=100
sc_demo || { bad "demo model and data"; finish; }
sc_write_job tt "$steps" 1 mpi
sc_write_job ref "$steps" 2 none
sed -i 's/every_steps: 25/every_steps: 10/' "$W/tt.yaml" "$W/ref.yaml"
ckpt=$(printf 'step-%08d.h5' "$steps")
cd "$W" || exit 1
export ORPO_LOG=info

sc_start_cluster || finish
check "Slurm has the pmix MPI plugin (srun --mpi=list)" eval 'srun --mpi=list 2>&1 | grep pmix >/dev/null'

cpus=$(nproc)
over=()
[ "$cpus" -lt 2 ] && over=(--overcommit)   # two tasks on a one-core node
jid=$(ORPO_SRUN_ARGS=--mpi=pmix sbatch --parsable --ntasks=2 -c 1 "${over[@]}" --gres=none --mem=1000M --time=10 \
      --signal=B:USR1@30 -o "$T/tt-%j.out" "$src/slurm/orpo.sh" tt.yaml) || { bad "sbatch --ntasks=2 slurm/orpo.sh"; finish; }
echo "submitted: job $jid (2 tasks)"
"$bin" train ref.yaml >"$T/ref.log" 2>&1 &
refpid=$!

# the signal right after the first checkpoint of the first segment
first=""
for _ in $(seq 1200); do
  first=$(find tt/checkpoints -name 'step-*.h5' 2>/dev/null | head -1)
  [ -n "$first" ] && break
  [ -z "$(squeue -h -j "$jid" 2>/dev/null)" ] && break
  sleep 0.1
done
if [ -z "$first" ]; then
  bad "no checkpoint of job $jid within 120 s"
  show_logs tt/slurm.log "$T/tt-$jid.out" "$T/log/slurmd.log"
  finish
fi
scancel --batch --signal=USR1 "$jid"
echo "first checkpoint $first after $(($(date +%s) - t_start)) s; SIGUSR1 sent to the batch shell"

if ! wait_gone 300 "$jid"; then
  bad "job $jid still in the queue 300 s after the signal"
  squeue
  show_logs tt/slurm.log "$T/log/slurmctld.log" "$T/log/slurmd.log"
  finish
fi
wait "$refpid"
refrc=$?
refpid=""
check "uninterrupted reference (one process, grad_accum 2) finished" [ "$refrc" -eq 0 ]

check "job COMPLETED with exit 0 (state $(jobfield "$jid" JobState), exit $(jobfield "$jid" ExitCode))" \
  eval '[ "$(jobfield "$jid" JobState)" = COMPLETED ] && [ "$(jobfield "$jid" ExitCode)" = 0:0 ]'
restarts=$(jobfield "$jid" Restarts)
check "job was requeued ($restarts times)" [ "${restarts:-0}" -ge 1 ]
check "orpo.sh ran the trainer as an srun step of 2 tasks, in both segments" \
  eval '[ "$(grep -c "orpo.sh: data parallel: 2 tasks on 1 node" tt/slurm.log)" -ge 2 ]'
check "the trainer ran as 2 MPI ranks, in both segments" \
  eval '[ "$(grep -c "data parallel: mpi, 2 ranks" tt/slurm.log)" -ge 2 ]'
cycle=$(requeue_cycle "$jid" tt/slurm.log)
check "log shows signal -> checkpoint -> exit 75 -> requeue -> restart 1 -> resume -> done (reached $cycle of 7)" \
  [ "$cycle" = 7 ]
at=$(sed -n 's/.*signal 10: checkpointing at step \([0-9]*\).*/\1/p' tt/slurm.log | head -1)
check "interrupted mid-run (checkpointed at step ${at:-?} of $steps)" eval '[ "${at:-0}" -gt 0 ] && [ "${at:-0}" -lt "$steps" ]'
echo "segments of the job:"
grep -E 'orpo.sh: (segment start|data parallel|received|trainer exit|requeue)' tt/slurm.log | sed 's/^/  /'

check "final checkpoint equals the uninterrupted one-process run's (params, adam_m, adam_v, state)" \
  same_ckpt "tt/checkpoints/$ckpt" "ref/checkpoints/$ckpt"
world=$(h5dump -d /state/world_size "tt/checkpoints/$ckpt" 2>/dev/null | sed -n 's/^ *(0): *\([0-9]*\).*/\1/p' | head -1)  # the value (its crc32 attribute follows)
check "final checkpoint written by 2 ranks (world_size ${world:-?})" [ "${world:-0}" = 2 ]
check "metrics train table equals the one-process run's (all but step_time, tokens_per_s, mem_peak)" \
  same_table tt /train "${x_train[@]}"
check "metrics val table equals the one-process run's" same_table tt /val -x segment
check "metrics.h5 segments (interrupted, done; job $jid; restart counts)" segments_ok tt requeue "$jid" "$steps"
"$table" tt/metrics.h5 /segments -x host | sed 's/^/  /'
echo "test_slurm_two_tasks: $(($(date +%s) - t_start)) s from the demo data to the end"

[ "$fail" -gt 0 ] && show_logs tt/slurm.log "$T/tt-$jid.out" "$T/log/slurmd.log"
finish
