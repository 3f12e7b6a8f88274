#!/usr/bin/env bash
# The CUDA build: when this build tree has the kernels, the library must hold device code for
# sm_80, sm_86, sm_89 and sm_90, and the binary must link cudart, cuBLAS and cuBLASLt.
set -eu
b=${ORPO_BUILD_DIR:?}
grep -q '^ORPO_CUDA:STRING=OFF' "$b/CMakeCache.txt" && { echo "this build has ORPO_CUDA=OFF"; exit 77; }
lib="$b/liborpo_cuda.a"
[ -f "$lib" ] || { echo "no CUDA library in $b (nvcc not found at configure time)"; exit 77; }
# cuobjdump lists the embedded cubins; without it (a minimal toolkit) the fatbin's ELF notes name the arch.
if command -v cuobjdump >/dev/null 2>&1; then elfs=$(cuobjdump --list-elf "$lib")
else elfs=$(strings "$lib" | grep -o 'sm_[0-9][0-9a]*' | sort -u); fi
echo "$elfs"
fail=0
for sm in sm_80 sm_86 sm_89 sm_90; do
  grep -q "$sm" <<<"$elfs" || { echo "no $sm code in $lib"; fail=1; }
done
libs=$(ldd "$b/orpo-hpc" 2>/dev/null || true)
for l in libcublas.so libcublasLt.so; do
  grep -q "$l" <<<"$libs" || grep -q "${l%.so}" <<<"$(readelf -d "$b/orpo-hpc")" || { echo "orpo-hpc does not link $l"; fail=1; }
done
[ $fail -eq 0 ] && echo "test_cuda_kernels: 6 passed, 0 failed"
exit $fail
