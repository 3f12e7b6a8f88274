#!/usr/bin/env bash
# import-data and import-model stopped from outside (issue 10, point 7), on the real binary:
#   - a file-size limit (ulimit -f): exit 4 with a message naming the output, no temporary, an old file untouched;
#   - SIGTERM / SIGINT during the import: exit 75, "removed the temporary ...", no temporary, no output;
#   - kill -9 during the import leaves the temporary; the next run removes it, says so, and succeeds;
#     a temporary of a live process is left alone.
# To stop an import in the middle without any timing, its input is a named pipe that nobody writes: the importer
# creates its temporary, then blocks opening the input (JSONL, Parquet, model.safetensors) until it is signalled.
set -u
bin=${ORPO_BIN:?}
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check_rc() { if [ "$1" -eq "$2" ]; then ok; else bad "$3: exit $1, expected $2: $(cat "$tmp/err" 2>/dev/null)"; fi; }
check_err() { if grep -qF -- "$1" "$tmp/err"; then ok; else bad "stderr lacks '$1': $(cat "$tmp/err")"; fi; }
no_temp() { # no_temp DIR WHAT: no temporary of ours in DIR
  if ls -A "$1" | grep -q '\.tmp\.'; then bad "$2: temporary left in $1: $(ls -A "$1")"; else ok; fi
}
# wait (up to 60 s, not a timing assertion) until a temporary appears in DIR; prints its name
wait_temp() {
  local i
  for i in $(seq 600); do
    local t; t=$(ls -A "$1" | grep '\.tmp\.' | head -1)
    if [ -n "$t" ]; then echo "$t"; return 0; fi
    sleep 0.1
  done
  return 1
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-import-signals-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

"$bin" make-demo --out "$tmp/demo" --pairs 200 --seed 5 >/dev/null 2>&1 || { echo "make-demo failed"; exit 1; }
hf=$tmp/demo/model pq=$tmp/demo/data/rlaif-v-demo.parquet
"$bin" import-model --from "$hf" --out "$tmp/model.h5" >/dev/null 2>&1 || { echo "import-model failed"; exit 1; }

# ---- ulimit -f: exit 4 naming the file, no temporary, the old file untouched ----
mkdir "$tmp/lim"
(ulimit -f 64; exec "$bin" import-model --from "$hf" --out "$tmp/lim/m.h5") 2>"$tmp/err"
check_rc $? 4 "import-model under ulimit -f 64"
check_err "writing $tmp/lim/m.h5"
check_err "File too large"
no_temp "$tmp/lim" "import-model under ulimit -f"
if [ -e "$tmp/lim/m.h5" ]; then bad "import-model under ulimit -f left m.h5"; else ok; fi
echo old >"$tmp/lim/d.h5"
(ulimit -f 32; exec "$bin" import-data --model "$tmp/model.h5" --parquet "$pq" --out "$tmp/lim/d.h5" --no-progress) 2>"$tmp/err"
check_rc $? 4 "import-data under ulimit -f 32"
check_err "writing $tmp/lim/d.h5"
check_err "File too large"
no_temp "$tmp/lim" "import-data under ulimit -f"
if [ "$(cat "$tmp/lim/d.h5")" = old ]; then ok; else bad "import-data under ulimit -f changed the old d.h5"; fi

# ---- SIGTERM / SIGINT while the importer waits for its input ----
# wait for PID to end (up to 60 s; a process that ignores the signal is then killed and reported); sets rc
wait_end() {
  local i
  for i in $(seq 600); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then bad "$2: still running 60 s after the signal"; kill -9 "$1"; fi
  wait "$1"; rc=$?
}
# sig_case NAME SIGNAL OUTFILE CMD...: CMD must block after creating the temporary of OUTFILE
sig_case() {
  local name=$1 sig=$2 out=$3; shift 3
  local dir; dir=$(dirname "$out")
  "$@" 2>"$tmp/err" &
  local pid=$!
  if ! wait_temp "$dir" >/dev/null; then bad "$name: no temporary appeared"; kill -9 $pid; wait $pid; return; fi
  kill -s "$sig" $pid
  wait_end $pid "$name"
  check_rc $rc 75 "$name"
  check_err "interrupted by SIG$sig: removed the temporary $dir/.$(basename "$out").tmp."
  check_err "nothing was written at $out"
  no_temp "$dir" "$name"
  if [ -e "$out" ]; then bad "$name: $out exists"; else ok; fi
}
mkdir "$tmp/sig"
mkfifo "$tmp/pipe.jsonl" "$tmp/pipe.parquet"
sig_case "import-data --jsonl, SIGTERM" TERM "$tmp/sig/d.h5" \
  "$bin" import-data --model "$tmp/model.h5" --jsonl "$tmp/pipe.jsonl" --images "$tmp/demo/data/images" \
  --out "$tmp/sig/d.h5" --no-progress
sig_case "import-data --parquet, SIGINT" INT "$tmp/sig/d.h5" \
  "$bin" import-data --model "$tmp/model.h5" --parquet "$tmp/pipe.parquet" --out "$tmp/sig/d.h5" --no-progress
mkdir "$tmp/hfpipe"
cp "$hf"/*.json "$tmp/hfpipe/"
mkfifo "$tmp/hfpipe/model.safetensors"
sig_case "import-model, SIGTERM" TERM "$tmp/sig/m.h5" "$bin" import-model --from "$tmp/hfpipe" --out "$tmp/sig/m.h5"
sig_case "import-model, SIGINT" INT "$tmp/sig/m.h5" "$bin" import-model --from "$tmp/hfpipe" --out "$tmp/sig/m.h5"

# ---- kill -9: the temporary stays; the next run removes it and says so ----
mkdir "$tmp/k9"
"$bin" import-data --model "$tmp/model.h5" --parquet "$tmp/pipe.parquet" --out "$tmp/k9/d.h5" --no-progress \
  2>/dev/null &
pid=$!
dtemp=$(wait_temp "$tmp/k9") || bad "import-data: no temporary appeared"
kill -9 $pid; wait $pid 2>/dev/null
"$bin" import-model --from "$tmp/hfpipe" --out "$tmp/k9/m.h5" 2>/dev/null &
pid=$!
for i in $(seq 600); do [ "$(ls -A "$tmp/k9" | grep -c '\.tmp\.')" -ge 2 ] && break; sleep 0.1; done
mtemp=$(ls -A "$tmp/k9" | grep '^\.m\.h5\.tmp\.')
kill -9 $pid; wait $pid 2>/dev/null
if [ -n "$dtemp" ] && [ -e "$tmp/k9/$dtemp" ] && [ -n "$mtemp" ]; then ok; else bad "kill -9 left no temporaries: $(ls -A "$tmp/k9")"; fi
# a temporary of a live process (this shell) on this host, named as the importer names them: left alone
host=${dtemp#.d.h5.tmp.}; host=${host%.*}
live=".d.h5.tmp.$host.$$"
: >"$tmp/k9/$live"
ORPO_LOG=info "$bin" import-data --model "$tmp/model.h5" --parquet "$pq" --out "$tmp/k9/d.h5" --no-progress 2>"$tmp/err"
check_rc $? 0 "import-data after kill -9"
check_err "removed 1 temporary file of $tmp/k9/d.h5 left by an import that died"
if [ -e "$tmp/k9/$dtemp" ]; then bad "the dead import's temporary $dtemp is still there"; else ok; fi
if [ -e "$tmp/k9/$live" ]; then ok; else bad "the temporary of a live process was removed"; fi
if [ -n "$mtemp" ] && [ -e "$tmp/k9/$mtemp" ]; then ok; else bad "import-data removed another file's temporary"; fi
rm -f "$tmp/k9/$live"
ORPO_LOG=info "$bin" import-model --from "$hf" --out "$tmp/k9/m.h5" 2>"$tmp/err"
check_rc $? 0 "import-model after kill -9"
check_err "removed 1 temporary file of $tmp/k9/m.h5 left by an import that died"
no_temp "$tmp/k9" "the runs after kill -9"
if [ -s "$tmp/k9/d.h5" ] && [ -s "$tmp/k9/m.h5" ]; then ok; else bad "the runs after kill -9 wrote no output"; fi

echo "test_import_signals.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
