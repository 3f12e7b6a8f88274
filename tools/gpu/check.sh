#!/usr/bin/env bash
# tools/gpu/check.sh — everything issue 12 measures on a GPU, in one run of at most ~8 minutes on one H100/H200:
#
#   1. env        nvidia-smi, nvcc, the GPU and its compute capability (the one architecture built)
#   2. deps       the unpacked .debs of $ORPO_DEBS (libyaml, ... missing on the GPU image) on the search paths
#   3. configure  cmake --preset cuda -DORPO_CUDA_ARCHS=<detected>
#   4. build      orpo-hpc and the tests of label cuda (all cores)
#   5. ctest      ctest -L cuda (the long demo job test only with ORPO_GPU_LONG=1)
#   6. selftest   orpo-hpc device --selftest (every op of the CUDA table against the CPU bf16 reference)
#   7. bench-8gb  orpo-hpc bench step --shape llava-v1.6-mistral-7b --random-weights --image 672x672 --pairs 2
#                 --gpu-memory-gb 8 --attention cudnn (cuDNN's fused attention; fails when the build has none)
#      bench-8gb-kernels   the same with --attention kernels (the materialised attention kernels), 2 timed steps
#   8. bench-full the same, unconstrained (the whole GPU), --attention auto
#   9. baseline   $BENCH/hf_orpo_baseline.py (transformers + PEFT, the same shapes)
#  10. roofline   $BENCH/roofline.py
#  11. memcheck, racecheck   compute-sanitizer on `orpo-hpc device --selftest` (every kernel, small shapes)
# then ONE summary table (stage, status, seconds, figures), also written to $OUT_DIR/summary.md with every stage's log.
# A stage that fails is recorded and the next one runs; a stage that cannot run (its prerequisite failed, or the time
# budget is spent) is "skipped". Exit 0 when every stage passed, 1 otherwise.
#
# Usage (from the repository root; docs/performance.md "GPU check"):
#   ORPO_DEBS=.gpu/debs ORPO_BENCH_DIR=.gpu/bench tools/gpu/check.sh [OUT_DIR]
# Environment:
#   ORPO_DEBS        a folder of .deb files or of their unpacked trees (dpkg -x) to add to the include, library and
#                    pkg-config paths (none: the system's)
#   ORPO_BENCH_DIR   the folder of hf_orpo_baseline.py and roofline.py (default: ../shared/bench, then shared/bench)
#   ORPO_GPU_BUDGET_S  the time budget of the whole run (480); each stage gets its own limit, cut to what is left
#   ORPO_GPU_LONG    1: also the long cuda tests (the demo job to >= 0.9 validation accuracy)
#   ORPO_GPU_ARCH    the architecture to build (default from nvidia-smi: 90 on an H100/H200)
#   ORPO_CUDNN_FRONTEND  the folder of cudnn_frontend.h (the wheel nvidia-cudnn-frontend's include/, carried to the
#                    GPU machine, which has no network; default: what CMake finds through python3)
#   BASELINE_LAYERS  decoder layers of the baseline model (default 32, the real depth)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
out=${1:-${OUT:-$root/gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}}
mkdir -p "$out"
budget=${ORPO_GPU_BUDGET_S:-480}
t_start=$(date +%s)
build=$root/build/cuda
bin=$build/orpo-hpc
names=() status=() secs=() figs=()

left() { echo $((budget - ($(date +%s) - t_start))); }
record() { names+=("$1"); status+=("$2"); secs+=("$3"); figs+=("$4"); }
# stage NAME LIMIT_S CMD...: runs CMD with its output in $out/NAME.log, at most LIMIT_S (or what is left)
stage() {
    local name=$1 limit=$2
    shift 2
    local rem
    rem=$(left)
    STAGE_SKIPPED=0 STAGE_RC=0 STAGE_S=0
    if [ "$rem" -lt 15 ]; then
        record "$name" skipped 0 "the time budget (${budget} s) is spent"
        STAGE_SKIPPED=1 STAGE_RC=2
        return 2
    fi
    [ "$limit" -gt "$rem" ] && limit=$rem
    echo "== $name (limit ${limit} s): $*"
    local t0 rc
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    local dt=$(($(date +%s) - t0))
    tail -n 4 "$out/$name.log" 2>/dev/null | sed 's/^/   | /'
    STAGE_RC=$rc STAGE_S=$dt
    return $rc
}
pass_or_fail() { # NAME RC FIGURES (nothing when the stage was skipped for time: recorded already)
    [ "${STAGE_SKIPPED:-0}" = 1 ] && return
    local st=ok
    if [ "$2" -eq 124 ] || [ "$2" -eq 137 ]; then st="FAILED (timed out)"
    elif [ "$2" -eq 77 ]; then st="skipped (77)"
    elif [ "$2" -ne 0 ]; then st="FAILED (exit $2)"; fi
    record "$1" "$st" "$STAGE_S" "$3"
}
skip() { record "$1" skipped 0 "$2"; }

# ---- 1. env -----------------------------------------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -1)
nvcc_bin=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
nvcc_v=$("$nvcc_bin" --version 2>/dev/null | tail -1)
arch=${ORPO_GPU_ARCH:-$(awk -F', ' '{ gsub(/\./, "", $4); print $4 }' <<<"$gpu")}
{ echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"; echo "gpu: ${gpu:-none}"; echo "nvcc: $nvcc_bin $nvcc_v"
  echo "host: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null) $(git -C "$root" status --short 2>/dev/null | wc -l) changed files"
} | tee "$out/env.log"
if [ -z "$gpu" ] || [ -z "$arch" ]; then
    record env FAILED 0 "nvidia-smi found no GPU"
else
    record env ok 0 "${gpu%%,*}, sm_$arch"
fi

# ---- 2. deps: unpacked .debs --------------------------------------------------------------------------------------
if [ -n "${ORPO_DEBS:-}" ]; then
    debroot=$ORPO_DEBS
    if compgen -G "$ORPO_DEBS/*.deb" >/dev/null; then
        debroot=$out/debroot
        mkdir -p "$debroot"
        for d in "$ORPO_DEBS"/*.deb; do dpkg -x "$d" "$debroot"; done
    fi
    debroot=$(cd "$debroot" && pwd)
    pcdir=$out/pkgconfig
    mkdir -p "$pcdir"
    # .pc files name /usr: rewrite to the unpacked tree
    find "$debroot" -name '*.pc' -exec sh -c 'for f; do sed "s|=/usr|='"$debroot"'/usr|" "$f" >"'"$pcdir"'/$(basename "$f")"; done' _ {} +
    for lib in "$debroot"/usr/lib/x86_64-linux-gnu "$debroot"/usr/lib; do
        [ -d "$lib" ] || continue
        # a package's shared library without its development link (libfoo.so -> libfoo.so.N): add the link
        for so in "$lib"/*.so.*; do
            [ -e "$so" ] || continue
            base=${so%%.so.*}.so
            [ -e "$base" ] || ln -s "$(basename "$so")" "$base" 2>/dev/null
        done
        export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        export CMAKE_LIBRARY_PATH="$lib${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}"
    done
    export PATH="$PATH:$debroot/usr/bin" # h5dump / h5diff of hdf5-tools (the cuda tests compare runs with them)
    export CPATH="$debroot/usr/include${CPATH:+:$CPATH}" PKG_CONFIG_PATH="$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    export CMAKE_INCLUDE_PATH="$debroot/usr/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}"
    record deps ok 0 "$(ls "$pcdir" | wc -l) pkg-config files from $ORPO_DEBS"
else
    record deps ok 0 "ORPO_DEBS not set: the system's libraries"
fi
missing=""
for m in yaml-0.1 libcjson stb openblas libzstd snappy libjpeg; do pkg-config --exists "$m" 2>/dev/null || missing+=" $m"; done
[ -n "$missing" ] && echo "warning: pkg-config does not find:$missing (put their .debs in ORPO_DEBS)" | tee -a "$out/env.log"
command -v h5diff >/dev/null || echo "warning: no h5dump/h5diff (hdf5-tools): the cuda tests that compare runs fail" |
    tee -a "$out/env.log"

# ---- 3, 4. configure and build ------------------------------------------------------------------------------------
built=0
fe=()
[ -n "${ORPO_CUDNN_FRONTEND:-}" ] && fe=(-DCUDNN_FRONTEND_INCLUDE="$(cd "$ORPO_CUDNN_FRONTEND" && pwd)")
if stage configure 120 cmake --preset cuda -DORPO_CUDA_ARCHS="${arch:-90}" "${fe[@]}"; then
    pass_or_fail configure 0 "sm_${arch:-90}; $(grep -o 'cuDNN attention [A-Z]*[^(]*' "$out/configure.log" | head -1 | cut -c1-80)"
    targets=(orpo-hpc)
    for t in "$root"/tests/cuda/test_*.c; do targets+=("cuda_$(basename "$t" .c)"); done
    if stage build 300 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"; then
        built=1
        pass_or_fail build 0 "${#targets[@]} targets"
    else
        pass_or_fail build "$STAGE_RC" "$(grep -m1 -E 'error' "$out/build.log" | cut -c1-120)"
    fi
else
    pass_or_fail configure "${STAGE_RC:-1}" "$(grep -m1 -E 'Error|error' "$out/configure.log" | cut -c1-120)"
    skip build "configure failed"
fi

# ---- 5. ctest -L cuda ---------------------------------------------------------------------------------------------
if [ $built = 1 ]; then
    excl=()
    [ "${ORPO_GPU_LONG:-0}" = 1 ] || excl=(-E 'cuda_test_demo_accuracy')
    stage ctest 240 ctest --test-dir "$build" -L cuda "${excl[@]}" --output-on-failure --timeout 200
    rc=$?
    sum=$(grep -E 'tests passed|tests failed' "$out/ctest.log" | tail -1)
    nskip=$(grep -c 'Not Run\|Skipped' "$out/ctest.log")
    pass_or_fail ctest $rc "${sum:-no summary}; $nskip skipped"
else
    skip ctest "no build"
fi

# ---- 6. op self-test ------------------------------------------------------------------------------------------------
if [ $built = 1 ]; then
    stage selftest 60 "$bin" device --selftest
    pass_or_fail selftest $? "$(grep -o 'op self-test.*' "$out/selftest.log" | cut -c1-140)"
else
    skip selftest "no build"
fi

# ---- 7, 8. benches ------------------------------------------------------------------------------------------------
bench_figs() { # the bench's step and memory lines, short
    local f=$1
    local step mem
    step=$(grep -o '[0-9.]* pairs/s, [0-9]* tokens/s' "$f" | head -1)
    local ms
    ms=$(grep -o 'best [0-9.]* ms' "$f" | head -1)
    mem=$(grep -o 'measured [0-9.]* GiB' "$f" | head -1)
    local pl
    pl=$(grep -o 'plan predicted [0-9.]* GiB: measured/plan [0-9.]*' "$f" | head -1)
    echo "${ms:+$ms, }${step:-no step}; ${mem:-no memory line}; ${pl:-}"
}
attn_figs() { # how many attention calls cuDNN ran
    grep -o 'attention calls: [0-9]* by cuDNN, [0-9]* by the kernels' "$1" | head -1 | sed 's/attention calls: /(/; s/$/)/'
}
if [ $built = 1 ]; then
    stage bench-8gb 150 "$bin" bench step --shape llava-v1.6-mistral-7b --random-weights --image 672x672 --pairs 2 \
        --gpu-memory-gb 8 --attention cudnn
    pass_or_fail bench-8gb $? "attention cudnn: $(bench_figs "$out/bench-8gb.log") $(attn_figs "$out/bench-8gb.log")"
    stage bench-8gb-kernels 120 "$bin" bench step --shape llava-v1.6-mistral-7b --random-weights --image 672x672 \
        --pairs 2 --gpu-memory-gb 8 --attention kernels --iters 2
    pass_or_fail bench-8gb-kernels $? "attention kernels: $(bench_figs "$out/bench-8gb-kernels.log")"
    stage bench-full 150 "$bin" bench step --shape llava-v1.6-mistral-7b --random-weights --image 672x672 --pairs 2 \
        --attention auto
    pass_or_fail bench-full $? "$(grep -o '^attention: [a-z]*' "$out/bench-full.log" | head -1): $(bench_figs \
        "$out/bench-full.log") $(attn_figs "$out/bench-full.log")"
else
    skip bench-8gb "no build"
    skip bench-8gb-kernels "no build"
    skip bench-full "no build"
fi

# ---- 9, 10. the PyTorch anchors -----------------------------------------------------------------------------------
bench_dir=${ORPO_BENCH_DIR:-}
if [ -z "$bench_dir" ]; then
    for d in "$root/../shared/bench" "$root/shared/bench" "$root/.gpu/bench"; do
        [ -f "$d/hf_orpo_baseline.py" ] && { bench_dir=$d; break; }
    done
fi
if [ -n "$bench_dir" ] && [ -f "$bench_dir/hf_orpo_baseline.py" ]; then
    export PYTHONUNBUFFERED=1
    export LAYERS=${BASELINE_LAYERS:-32}
    stage baseline 180 python3 "$bench_dir/hf_orpo_baseline.py"
    rc=$?
    fig=$(python3 - "$out/baseline.log" <<'EOF' 2>/dev/null
import json, sys
rows = []
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith("{"):
        try: j = json.loads(line)
        except ValueError: continue
        rows.append("%s: %s pairs/s, %s GiB" % (j.get("config", "?").split(":")[0], j.get("pairs_per_s", j.get("error", "?")), j.get("peak_mem_GiB", "?")))
print("; ".join(rows))
EOF
)
    pass_or_fail baseline $rc "${fig:-no JSON line}"
    stage roofline 90 python3 "$bench_dir/roofline.py"
    pass_or_fail roofline $? "$(tail -n 2 "$out/roofline.log" 2>/dev/null | tr '\n' ' ' | cut -c1-160)"
else
    skip baseline "no hf_orpo_baseline.py (set ORPO_BENCH_DIR)"
    skip roofline "no roofline.py (set ORPO_BENCH_DIR)"
fi

# ---- 11. compute-sanitizer ------------------------------------------------------------------------------------------
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ $built = 1 ] && [ -n "$san" ]; then
    for tool in memcheck racecheck; do
        stage "$tool" 90 "$san" --tool "$tool" --error-exitcode 9 "$bin" device --selftest
        pass_or_fail "$tool" $? "$(grep -m1 -E 'ERROR SUMMARY|RACECHECK SUMMARY|Error' "$out/$tool.log" | cut -c1-120)"
    done
else
    skip memcheck "${san:+no build}${san:-no compute-sanitizer}"
    skip racecheck "${san:+no build}${san:-no compute-sanitizer}"
fi

# ---- the summary ----------------------------------------------------------------------------------------------------
total=$(($(date +%s) - t_start))
{
    echo "## GPU check $(date -u +%Y-%m-%d), ${gpu:-no GPU}, ${total} s"
    echo
    echo "| stage | status | s | figures |"
    echo "| --- | --- | --- | --- |"
    for i in "${!names[@]}"; do echo "| ${names[$i]} | ${status[$i]} | ${secs[$i]} | ${figs[$i]//|/\\|} |"; done
} | tee "$out/summary.md"
echo "logs: $out"
bad=0
for s in "${status[@]}"; do case $s in ok | skipped*) ;; *) bad=1 ;; esac; done
exit $bad
