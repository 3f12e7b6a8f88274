#!/usr/bin/env bash
# test_bench_ranks.sh — `orpo-hpc bench step --ranks N` (issue 13, docs/parallel.md "Cost"): started without a
# launcher it runs itself under `mpirun -np N`; rank 0 alone prints, one all-reduce line per variant with the
# bytes of the gradient sum (4 per value + 13 doubles), its time and its share of the step; --values N sums N
# values. Refused: --ranks that differs from the launcher's world, --values without --ranks. Timings are printed,
# never checked. Skipped (77) without MPI in this build or without mpirun, as the other dist tests.
set -uo pipefail
bin=${ORPO_BIN:?ORPO_BIN is not set}
mpirun=${ORPO_MPIEXEC:-$(command -v mpirun)}
# grep without -q: reading all of ldd's output, no SIGPIPE for ldd, whose failure pipefail would report
if ! ldd "$bin" 2>/dev/null | grep libmpi >/dev/null; then echo "SKIP: $bin was built without MPI"; exit 77; fi
if [ -z "$mpirun" ] || [ ! -x "$mpirun" ]; then echo "SKIP: mpirun not found (apt-get install openmpi-bin)"; exit 77; fi
# OpenMPI refuses root without these; two cores run three ranks only when told to oversubscribe
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_hwloc_base_binding_policy=none
PATH="$(dirname "$mpirun"):$PATH"   # the command finds mpirun on PATH
export PATH
export ORPO_LOG=info   # "this is rank 0" (ctest sets warn)
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d /tmp/orpo-bench-ranks-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
"$bin" make-demo --out demo --pairs 20 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }

# no launcher: the command starts mpirun -np 2 itself
out=$("$bin" bench step --model demo --iters 1 --ranks 2 2>&1)
rc=$?
echo "$out"
[ "$rc" -eq 0 ] || bad "bench step --ranks 2: exit $rc"
n=$(grep -c '^  all-reduce, 2 ranks: ' <<<"$out")
[ "$n" -eq 2 ] || bad "expected one all-reduce line per variant from rank 0 alone, got $n"
[ "$(grep -c '^speed-up from prefix sharing' <<<"$out")" -eq 1 ] || bad "rank 1 printed too (or nobody did)"
grep -q 'this is rank 0' <<<"$out" || bad "not started as MPI ranks"
# the bytes: 4 per gradient value + 13 doubles
line=$(grep -m1 '^  all-reduce, 2 ranks: ' <<<"$out")
vals=$(sed -n 's/.*MB (\([0-9]*\) gradient values + 13 sums).*/\1/p' <<<"$line")
mb=$(sed -n 's/.*ranks: \([0-9.]*\) MB.*/\1/p' <<<"$line")
want=$(awk -v v="${vals:-0}" 'BEGIN { printf "%.2f", (4 * v + 104) / 1e6 }')
{ [ -n "$vals" ] && [ "$vals" -gt 0 ] && [ "$mb" = "$want" ]; } || bad "bytes: '$mb' MB for '$vals' values, expected $want"
grep -q 'the sum is [0-9.]*% of the step' <<<"$line" || bad "no share of the step in '$line'"
grep -q 'not overlapped with the backward' <<<"$out" || bad "the output does not say the sum is not overlapped"

# --values: that many values summed, under an mpirun started by hand
out=$("$mpirun" -np 2 "$bin" bench step --model demo --iters 1 --ranks 2 --values 3000000 2>&1)
rc=$?
[ "$rc" -eq 0 ] || { echo "$out"; bad "mpirun -np 2 bench step --ranks 2 --values 3000000: exit $rc"; }
grep -q 'all-reduce, 2 ranks: 12.00 MB (3000000 gradient values (--values) + 13 sums)' <<<"$out" ||
  { echo "$out"; bad "--values 3000000: not 12.00 MB of 3000000 values"; }

# refusals
out=$("$mpirun" -np 3 "$bin" bench step --model demo --iters 1 --ranks 2 2>&1)
rc=$?
{ [ "$rc" -ne 0 ] && grep -q 'bench step --ranks 2: the launcher (mpirun) started 3 ranks' <<<"$out"; } ||
  { echo "$out"; bad "--ranks 2 under mpirun -np 3: exit $rc, expected a refusal naming both"; }
out=$("$bin" bench step --model demo --values 10 2>&1)
rc=$?
{ [ "$rc" -eq 2 ] && grep -q -- '--values needs --ranks' <<<"$out"; } || bad "--values without --ranks: exit $rc ($out)"

echo "$fails failed"
[ "$fails" -eq 0 ]
