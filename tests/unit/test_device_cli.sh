#!/usr/bin/env bash
# `orpo-hpc device --selftest` where no GPU is usable (CI): it says why and exits 2, the code of "not available"
# (docs/cli.md: also a command that is not built yet); `device` alone lists and exits 0. With a GPU the self-test
# itself is checked by the cuda tests (tests/cuda/test_ops_gpu.c), so this test skips (77) there.
set -u
bin=${ORPO_BIN:?}
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
out=$("$bin" device 2>&1); rc=$?
[ $rc = 0 ] || bad "device: exit $rc: $out"
if ! grep -q '^CUDA devices: 0' <<<"$out"; then
    echo "skipped: a CUDA GPU is usable here ($(grep -m1 '^CUDA devices' <<<"$out")); tests/cuda check the self-test"
    exit 77
fi
why=$(sed -n 's/^CUDA devices: 0 — //p' <<<"$out")
err=$("$bin" device --selftest 2>&1 >/dev/null); rc=$?
echo "device --selftest: exit $rc: $err"
[ $rc = 2 ] || bad "device --selftest without a GPU: exit $rc, expected 2"
grep -qF -- "--selftest needs a CUDA GPU: $why" <<<"$err" || bad "device --selftest does not say why: $err"
echo "$fails failed"
[ $fails -eq 0 ]
