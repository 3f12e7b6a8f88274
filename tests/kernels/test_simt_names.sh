#!/usr/bin/env bash
# test_simt_names — the CPU executor's build of the kernels (liborpo_simt.a) and the GPU build (liborpo_cuda.a) define
# no global symbol in common (kernels/simt/simt_names.h renames the shared ones), so a program of a CUDA build can
# link both; and the executor's library defines no kc_ / kf_ op under its GPU name.
set -euo pipefail
b=${ORPO_BUILD_DIR:?}
simt=$b/liborpo_simt.a
[ -f "$simt" ] || { echo "no $simt"; exit 1; }
defs() { nm -g --defined-only "$1" 2>/dev/null | awk 'NF == 3 && $2 ~ /^[TDBRVW]$/ { print $3 }' | sort -u; }
defs "$simt" > "${TMPDIR:-/tmp}/simt_syms.$$"
trap 'rm -f "${TMPDIR:-/tmp}/simt_syms.$$" "${TMPDIR:-/tmp}/cuda_syms.$$"' EXIT
bad=$(grep -E '^k[cf]_' "${TMPDIR:-/tmp}/simt_syms.$$" || true)
if [ -n "$bad" ]; then
    echo "liborpo_simt.a defines ops under their GPU names (add them to kernels/simt/simt_names.h):"; echo "$bad"; exit 1
fi
n=$(grep -c '^ksim_' "${TMPDIR:-/tmp}/simt_syms.$$" || true)
[ "$n" -gt 40 ] || { echo "expected the kernel ops as ksim_* in liborpo_simt.a, found $n"; exit 1; }
if [ -f "$b/liborpo_cuda.a" ]; then
    defs "$b/liborpo_cuda.a" > "${TMPDIR:-/tmp}/cuda_syms.$$"
    common=$(comm -12 "${TMPDIR:-/tmp}/simt_syms.$$" "${TMPDIR:-/tmp}/cuda_syms.$$")
    if [ -n "$common" ]; then
        echo "symbols defined by both liborpo_simt.a and liborpo_cuda.a:"; echo "$common"; exit 1
    fi
    echo "ok: $n ksim_* symbols, none shared with liborpo_cuda.a"
else
    echo "ok: $n ksim_* symbols (no CUDA build here to compare with)"
fi
