#!/usr/bin/env bash
# A CPU-only build where nvcc is absent: configure with nvcc hidden from PATH (and CUDACXX unset) in AUTO
# mode, build, and check that the binary has no CUDA and refuses runtime.device=cuda with a clear message.
set -eu
src=${ORPO_SOURCE_DIR:?}
dir=$(mktemp -d "${TMPDIR:-/tmp}/orpo-cpuonly-XXXXXX")
trap 'rm -rf "$dir"' EXIT
# Drop every PATH entry that holds an nvcc (the toolkit's bin and any wrapper such as /usr/local/bin/nvcc).
path=""
IFS=: read -r -a entries <<<"$PATH"
for d in "${entries[@]}"; do
  [ -n "$d" ] && [ ! -e "$d/nvcc" ] && path="${path:+$path:}$d"
done
if PATH=$path command -v nvcc >/dev/null 2>&1; then
  echo "nvcc is still on the stripped PATH; cannot hide it here" >&2; exit 77
fi
env -u CUDACXX -u CUDA_HOME -u CUDA_PATH PATH="$path" cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release >"$dir/configure.log" 2>&1 \
  || { cat "$dir/configure.log"; exit 1; }
grep -q "orpo-hpc: CUDA kernels OFF" "$dir/configure.log" || { echo "configure did not turn CUDA off"; cat "$dir/configure.log"; exit 1; }
env -u CUDACXX -u CUDA_HOME -u CUDA_PATH PATH="$path" cmake --build "$dir" -j2 --target orpo-hpc >"$dir/build.log" 2>&1 \
  || { tail -50 "$dir/build.log"; exit 1; }
out=$("$dir/orpo-hpc" device); echo "$out"
grep -q "built with CUDA: no" <<<"$out" || { echo "CPU-only binary claims CUDA"; exit 1; }
set +e
out=$("$dir/orpo-hpc" device --want cuda 2>&1); rc=$?
set -e
echo "$out"
[ "$rc" -eq 2 ] || { echo "device --want cuda exited $rc, expected 2"; exit 1; }
grep -q "built without CUDA" <<<"$out" || { echo "message does not say the build has no CUDA"; exit 1; }
# ORPO_CUDA=ON without nvcc must fail at configure time with a clear message.
set +e
out=$(env -u CUDACXX -u CUDA_HOME -u CUDA_PATH PATH="$path" cmake -S "$src" -B "$dir/on" -DORPO_CUDA=ON 2>&1); rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "ORPO_CUDA=ON but nvcc was not found" <<<"$out" \
  || { echo "ORPO_CUDA=ON without nvcc did not fail clearly: $out"; exit 1; }
echo "test_cpu_only: 5 passed, 0 failed"
