#!/usr/bin/env bash
# submit-chain.sh — for sites that forbid `scontrol requeue`: submits N copies ("links") of slurm/orpo.sh
# for one job, all with the same job name and --dependency=singleton, so that Slurm runs them one after the
# other (spec §3.4). Each link runs `orpo-hpc resume JOB.yaml` from the newest checkpoint until its time
# limit's warning signal, checkpoints and ends; the next link continues. The link that finishes the job
# cancels the links still pending; when the links run out first, the last one says so in the log and exits 75.
#
#   slurm/submit-chain.sh JOB.yaml N [SBATCH_OPTION ...] [-- ORPO_ARG ...]
#   slurm/submit-chain.sh jobs/demo.yaml 5 --time=2:00:00 -- --set runtime.device=cpu
#
# The job name is orpo-chain-<file name of JOB.yaml without .yaml> unless a --job-name/-J is given; two
# chains of one name would interleave, which is harmless (each link resumes from the newest checkpoint)
# but pointless. Prints the N job ids, one a line. Exit 2 on bad arguments, 1 when sbatch fails (the links
# already submitted stay; cancel them with: scancel -n NAME).
set -euo pipefail

usage() { echo "usage: slurm/submit-chain.sh JOB.yaml N [SBATCH_OPTION ...] [-- ORPO_ARG ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
job=$1
n=$2
shift 2
if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then
  echo "submit-chain.sh: N must be a positive integer, got '$n'" >&2
  usage
fi
[ -f "$job" ] || { echo "submit-chain.sh: $job: no such job file" >&2; exit 2; }

sbopts=()
orpoargs=()
name=""
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; orpoargs=("$@"); break ;;
    --job-name=*) name=${1#--job-name=}; shift ;;
    --job-name|-J) [ $# -ge 2 ] || usage; name=$2; shift 2 ;;
    -J*) name=${1#-J}; shift ;;
    *) sbopts+=("$1"); shift ;;
  esac
done
if [ -z "$name" ]; then
  base=${job##*/}
  name=orpo-chain-${base%.y*ml}
fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for ((i = 1; i <= n; i++)); do
  # ORPO_SLURM_MODE=chain: the script never calls scontrol requeue; it leaves the work to the next link
  sbatch --parsable --job-name="$name" --dependency=singleton --export=ALL,ORPO_SLURM_MODE=chain \
    "${sbopts[@]}" "$here/orpo.sh" "$job" "${orpoargs[@]}"
done
