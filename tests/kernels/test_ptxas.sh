#!/usr/bin/env bash
# The kernels' resource gate (issue 12, CI without a GPU): every kernels/*.cu except the CUDA runtime glue files
# (CMakeLists.txt ORPO_CUDA_ONLY: no kernels of the op table) and the files kept out of the GPU library (its
# list(REMOVE_ITEM ORPO_CUDA_SRC ...): the CPU executor's own test kernels), compiled by nvcc for sm_80, sm_86, sm_89
# and sm_90 with `ptxas -v` (and --fmad=false, as the build compiles them); fails on any register spill (spill stores
# or loads > 0) and on static shared memory above the budget of 48 KB per kernel (the default per-block limit without
# an opt-in; dynamic shared memory is sized at launch), naming the file, the architecture and the kernel. Skipped (77)
# when nvcc is not at $CUDACXX, on PATH or in /usr/local/cuda/bin. Two compilations at a time (CI has 2 cores).
#
#   test_ptxas.sh [FILE.cu ...]   those files instead of kernels/*.cu
#   PTXAS_ARCHS="80 90"           other architectures;  PTXAS_SMEM_BUDGET=bytes   another budget
#   NVCC_EXTRA="..."              extra nvcc flags (e.g. -maxrregcount=16 to see the gate fail on spills)
set -uo pipefail
src=${ORPO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
nvcc=""
for c in "${CUDACXX:-}" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc; do
    if [ -n "$c" ] && [ -x "$c" ]; then nvcc=$c; break; fi
done
if [ -z "$nvcc" ]; then
    echo "skipped: nvcc not found (\$CUDACXX, PATH, /usr/local/cuda/bin): the ptxas resource gate needs the CUDA toolkit"
    exit 77
fi
archs=${PTXAS_ARCHS:-80 86 89 90}
budget=${PTXAS_SMEM_BUDGET:-49152}
if [ $# -gt 0 ]; then
    files=("$@")
else
    glue=$(sed -n 's/^ *set(ORPO_CUDA_ONLY \(.*\))/\1/p' "$src/CMakeLists.txt")
    [ -n "$glue" ] || { echo "FAIL: no set(ORPO_CUDA_ONLY ...) in $src/CMakeLists.txt"; exit 1; }
    # and the files CMakeLists.txt keeps out of the GPU library (list(REMOVE_ITEM ORPO_CUDA_SRC .../kernels/X.cu))
    glue+=" $(sed -n 's|^ *list(REMOVE_ITEM ORPO_CUDA_SRC .*/kernels/\([^ )]*\.cu\))|\1|p' "$src/CMakeLists.txt" | tr '\n' ' ')"
    files=()
    for f in "$src"/kernels/*.cu; do
        b=$(basename "$f")
        case " $glue " in *" $b "*) continue ;; esac
        files+=("$f")
    done
fi
[ ${#files[@]} -gt 0 ] || { echo "FAIL: no kernels/*.cu to check"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-ptxas-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "nvcc: $nvcc ($("$nvcc" --version | tail -1)); sm_${archs// /, sm_}; static shared memory budget $budget bytes"
echo "files: ${files[*]##*/}"

# one compilation: its ptxas report in $tmp/<file>.<arch>.log, the exit status in .rc
compile() {
    local f=$1 a=$2 base
    base=$(basename "$f" .cu)
    # shellcheck disable=SC2086
    "$nvcc" -std=c++17 -cubin -arch=sm_$a -Xptxas -v --fmad=false -I"$src/src" -I"$src/kernels" ${NVCC_EXTRA:-} \
        -o "$tmp/$base.$a.cubin" "$f" >"$tmp/$base.$a.log" 2>&1
    echo $? >"$tmp/$base.$a.rc"
}
export -f compile
export nvcc src tmp
t0=$(date +%s)
for f in "${files[@]}"; do for a in $archs; do printf '%s\0%s\0' "$f" "$a"; done; done |
    xargs -0 -n 2 -P 2 bash -c 'compile "$1" "$2"' _
echo "compiled ${#files[@]} file(s) x $(wc -w <<<"$archs") architectures in $(( $(date +%s) - t0 )) s"

demangle() { if command -v c++filt >/dev/null; then c++filt; else cat; fi; }
fails=0 kernels=0
for f in "${files[@]}"; do
    base=$(basename "$f" .cu)
    for a in $archs; do
        log=$tmp/$base.$a.log
        if [ "$(cat "$tmp/$base.$a.rc")" != 0 ]; then
            echo "FAIL: $base.cu sm_$a: nvcc failed:"; sed 's/^/    /' "$log" | head -20
            fails=$((fails + 1)); continue
        fi
        # "Compiling entry function 'NAME' for 'sm_XX'" starts a kernel; "Function properties for NAME" then
        # "N bytes stack frame, N bytes spill stores, N bytes spill loads"; "Used R registers, ... N bytes smem"
        report=$(awk -v budget="$budget" '
            /Compiling entry function/ { match($0, /function .[^ ]+. for/); fn = substr($0, RSTART + 10, RLENGTH - 15); n++ }
            /Function properties for/ { pf = $NF }
            /spill stores/ {
                st = $0; sub(/ bytes spill stores.*/, "", st); sub(/.*, /, "", st)
                ld = $0; sub(/ bytes spill loads.*/, "", ld); sub(/.*, /, "", ld)
                if (st + 0 > 0 || ld + 0 > 0) print "SPILL " pf " " st " bytes spill stores, " ld " bytes spill loads"
            }
            /Used [0-9]+ registers/ {
                sm = 0
                if (match($0, /[0-9]+ bytes smem/)) { sm = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", sm) }
                if (sm + 0 > budget) print "SMEM " fn " " sm " bytes of static shared memory > " budget
                reg = $0; sub(/.*Used /, "", reg); sub(/ registers.*/, "", reg)
                print "OK " fn " " reg " registers, " sm " bytes smem"
            }
            END { print "COUNT " n + 0 }' "$log")
        n=$(sed -n 's/^COUNT //p' <<<"$report")
        kernels=$((kernels + n))
        while read -r kind name rest; do
            case $kind in
            SPILL | SMEM)
                echo "FAIL: $base.cu sm_$a: kernel $(demangle <<<"$name"): $rest"
                fails=$((fails + 1)) ;;
            esac
        done <<<"$report"
        if [ "$a" = "${archs%% *}" ]; then
            grep '^OK ' <<<"$report" | while read -r _ name rest; do echo "  $base.cu sm_$a $(demangle <<<"$name" | cut -c1-90): $rest"; done
        fi
    done
done
echo "$kernels kernel compilations checked, $fails failed"
[ $fails -eq 0 ]
