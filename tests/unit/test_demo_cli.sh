#!/usr/bin/env bash
# make-demo from the command line: options, exit codes, and the printed next step (import-model) working on
# what it wrote.
set -u
bin=${ORPO_BIN:?}
pass=0; fail=0
ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # expect_rc RC CMD...
  local want=$1; shift
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -eq "$want" ]; then ok; else bad "'$*' exited $rc, expected $want: $out"; fi
}
expect_out() { if grep -q -- "$1" <<<"$out"; then ok; else bad "output lacks '$1': $out"; fi; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-demo-cli-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

expect_rc 0 "$bin" make-demo --out "$tmp/d" --pairs 30 --seed 7
expect_out "import-model --from $tmp/d/model"
for f in model/config.json model/model.safetensors model/tokenizer.json model/tokenizer_config.json \
         model/special_tokens_map.json data/pairs.jsonl data/rlaif-v-demo.parquet data/images/000030.png; do
  if [ -s "$tmp/d/$f" ]; then ok; else bad "missing $f"; fi
done
if [ -e "$tmp/d/data/images/000031.png" ]; then bad "more images than --pairs"; else ok; fi
n=$(wc -l < "$tmp/d/data/pairs.jsonl")
if [ "$n" -eq 30 ]; then ok; else bad "pairs.jsonl has $n lines, expected 30"; fi
# the same seed again: byte-identical
expect_rc 0 "$bin" make-demo --out "$tmp/e" --pairs 30 --seed 7
if cmp -s "$tmp/d/data/rlaif-v-demo.parquet" "$tmp/e/data/rlaif-v-demo.parquet" &&
   cmp -s "$tmp/d/model/model.safetensors" "$tmp/e/model/model.safetensors"; then ok; else bad "not deterministic"; fi
# the model directory goes through the real importer
expect_rc 0 "$bin" import-model --from "$tmp/d/model" --out "$tmp/d/model.h5"
if [ -s "$tmp/d/model.h5" ]; then ok; else bad "import-model wrote no model.h5"; fi
# --mix picks the question kinds; --init hf writes HF's N(0, 0.02^2) init (another model file)
expect_rc 0 "$bin" make-demo --out "$tmp/m" --pairs 20 --mix 1,0,0,0,0,0 --init hf
n=$(grep -c '"question": "What color is the' "$tmp/m/data/pairs.jsonl")
if [ "$n" -eq 20 ]; then ok; else bad "--mix 1,0,0,0,0,0: $n of 20 colour questions"; fi
expect_rc 0 "$bin" make-demo --out "$tmp/s" --pairs 20 --mix 1,0,0,0,0,0 --init scaled
if cmp -s "$tmp/m/data/pairs.jsonl" "$tmp/s/data/pairs.jsonl" &&
   ! cmp -s "$tmp/m/model/model.safetensors" "$tmp/s/model/model.safetensors"; then ok; else bad "--init changes the data or not the model"; fi
# --init built: the constructed vision tower (another model file than scaled, the same data; its features: test_demo)
expect_rc 0 "$bin" make-demo --out "$tmp/b" --pairs 20 --mix 1,0,0,0,0,0 --init built
if cmp -s "$tmp/b/data/pairs.jsonl" "$tmp/s/data/pairs.jsonl" &&
   ! cmp -s "$tmp/b/model/model.safetensors" "$tmp/s/model/model.safetensors"; then ok; else bad "--init built changes the data or not the model"; fi
expect_rc 2 "$bin" make-demo --out "$tmp/x" --mix 1,2;          expect_out "--mix 1,2: expected 6 comma-separated integers"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --mix 0,0,0,0,0,0;  expect_out "add up to 0"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --init zero;        expect_out "--init zero: expected scaled, hf or built"
# bad arguments: exit 2 with a message; an output under a regular file: exit 4
expect_rc 2 "$bin" make-demo;                               expect_out "--out DIR is required"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --pairs 0;      expect_out "expected an integer in 1..1000000"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --pairs 12abc;  expect_out "--pairs 12abc"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --seed -1;      expect_out "--seed -1"
expect_rc 2 "$bin" make-demo --out "$tmp/x" --frobnicate;   expect_out "unexpected argument '--frobnicate'"
: > "$tmp/file"
expect_rc 4 "$bin" make-demo --out "$tmp/file/d" --pairs 2; expect_out "$tmp/file"
echo "test_demo_cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
