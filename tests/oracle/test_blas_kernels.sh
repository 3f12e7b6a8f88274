#!/usr/bin/env bash
# The numerically sensitive oracle tests again under other OpenBLAS kernels. Debian's OpenBLAS is built with
# DYNAMIC_ARCH: OPENBLAS_CORETYPE=<name> selects the sgemm/sdot kernels of another CPU family (other vector
# widths, FMA or not, other blocking: other summation orders). The tolerances of these tests are derived for any
# summation order (tests/oracle/tolerance.h, adamw_bound.h; docs/testing.md), so they must hold under every
# kernel this CPU can execute. Up to 3 kernels other than the one OpenBLAS picks itself, the most different first
# (1 under a sanitizer build, where each run is slower). Skips (77) when OpenBLAS ignores OPENBLAS_CORETYPE.
set -u
bin=${ORPO_BUILD_DIR:?}
tests="oracle_test_step oracle_test_llava_forward oracle_test_model_import oracle_test_ops oracle_test_adamw oracle_test_orpo oracle_test_nf4"
for t in $tests; do
  [ -x "$bin/$t" ] || { echo "missing $bin/$t (build the oracle tests first)"; exit 1; }
done
core_of() { OPENBLAS_VERBOSE=2 OPENBLAS_CORETYPE=$1 "$bin/oracle_test_ops" 2>&1 | sed -n 's/^Core: //p' | head -1; }
default=$(OPENBLAS_VERBOSE=2 "$bin/oracle_test_ops" 2>&1 | sed -n 's/^Core: //p' | head -1)
if [ -z "$default" ]; then echo "OpenBLAS does not report its kernel (not a DYNAMIC_ARCH build?)"; exit 77; fi
flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { case "$flags" in *" $1 "*) return 0 ;; esac; return 1; }
cands=""  # the most different families first; Zen's sgemm kernels are Haswell's, so Haswell adds nothing on Zen
has avx512f && has avx512bw && has avx512vl && cands="$cands SkylakeX"
has avx && cands="$cands Sandybridge"
has ssse3 && cands="$cands Core2"
has pni && cands="$cands Prescott"
has sse4_2 && cands="$cands Nehalem"
has avx2 && has fma && [ "$default" != Zen ] && cands="$cands Haswell"
max=3
if ldd "$bin/oracle_test_step" 2>/dev/null | grep -q libasan; then max=1; fi
chosen=""
n=0
for c in $cands; do
  [ "$c" = "$default" ] && continue
  [ $n -ge $max ] && break
  if [ "$(core_of "$c")" != "$c" ]; then echo "OPENBLAS_CORETYPE=$c is ignored here"; continue; fi
  chosen="$chosen $c"
  n=$((n + 1))
done
[ -n "$chosen" ] || { echo "no other OpenBLAS kernel available (default $default)"; exit 77; }
echo "OpenBLAS default kernel: $default; also running:$chosen"
fail=0
for c in $chosen; do
  for t in $tests; do
    if OPENBLAS_CORETYPE=$c "$bin/$t" >"${TMPDIR:-/tmp}/orpo-blas-$$.log" 2>&1; then
      echo "  $c $t: ok"
    else
      echo "  $c $t: FAILED"
      tail -20 "${TMPDIR:-/tmp}/orpo-blas-$$.log"
      fail=1
    fi
  done
done
rm -f "${TMPDIR:-/tmp}/orpo-blas-$$.log"
exit $fail
