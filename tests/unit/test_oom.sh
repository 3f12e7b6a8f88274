#!/usr/bin/env bash
# Out of memory in a real command: exit 4 and "out of memory: cannot allocate N bytes for WHAT", never a segfault
# (io/mem.h). `bench forward --text 1000000000` asks for 4 GB of token ids, over a 1 GiB address-space limit.
# Skipped under the sanitizer build: ASan reserves terabytes of shadow memory and cannot run under ulimit -v.
set -uo pipefail
bin=${ORPO_BIN:?}
build=${ORPO_BUILD_DIR:?}
case "$build" in */asan) echo "skipped: ASan cannot run under ulimit -v"; exit 77 ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-oom-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
has() { if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: expected '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
code() { if [ "$1" != "$2" ]; then echo "FAIL: $3: exit $1, expected $2"; fails=$((fails + 1)); fi; }

"$bin" make-demo --out "$tmp/demo" --pairs 4 >/dev/null 2>&1 || { echo "FAIL: make-demo"; exit 1; }

# the limit applies to the command only; 1 GiB is ample for start-up and the tiny model
out=$(ulimit -v 1048576 && "$bin" bench forward --model "$tmp/demo/model" --text 1000000000 --iters 1 2>&1)
code $? 4 "bench forward under ulimit -v 1 GiB"
has "$out" "orpo-hpc: error: out of memory: cannot allocate 40000"
has "$out" "bytes ("
has "$out" "MiB) for bench: token ids"

[ "$fails" -eq 0 ] && echo "test_oom: all passed" || echo "test_oom: $fails failed"
exit $((fails > 0))
