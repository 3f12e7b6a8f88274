#!/usr/bin/env bash
# import-model loads and checks the tokenizer (issue 10, point 10): a truncated or broken tokenizer.json, or one
# that does not belong to the weights, stops the import with exit 3, a message naming the file and what is wrong,
# and nothing at --out (an old file there is untouched); a good one imports.
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
expect_out() { if grep -qF -- "$1" <<<"$out"; then ok; else bad "output lacks '$1': $out"; fi; }
nothing_at() { # nothing_at DIR: no file and no temporary left in DIR
  if [ -z "$(ls -A "$1")" ]; then ok; else bad "left in $1: $(ls -A "$1")"; fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-import-tok-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$bin" make-demo --out "$tmp/demo" --pairs 10 --seed 3 >/dev/null 2>&1 || { echo "make-demo failed"; exit 1; }
hf=$tmp/demo/model
tj=$hf/tokenizer.json
n=$(wc -c <"$tj")

# truncated in the middle (a copy cut short): the parse position is named
mkdir "$tmp/cut" "$tmp/out"
cp "$hf"/* "$tmp/cut/"
# cut just after the last ',' of the first half: the parser names the last byte it read, the ','; a cut inside a
# multi-byte UTF-8 character such as '▁' would be named at the character's first byte instead
half=$(($(head -c $((n / 2)) "$tj" | LC_ALL=C grep -ob ',' | tail -1 | cut -d: -f1) + 1))
head -c "$half" "$tj" >"$tmp/cut/tokenizer.json"
expect_rc 3 "$bin" import-model --from "$tmp/cut" --out "$tmp/out/m.h5"
expect_out "import-model: the tokenizer cannot be used; nothing written: $tmp/cut/tokenizer.json: line 1:$half"
expect_out "invalid JSON"
nothing_at "$tmp/out"

# an empty file
: >"$tmp/cut/tokenizer.json"
expect_rc 3 "$bin" import-model --from "$tmp/cut" --out "$tmp/out/m.h5"
expect_out "$tmp/cut/tokenizer.json"
nothing_at "$tmp/out"

# valid JSON, but not a usable tokenizer: no model section
printf '{"version": "1.0", "added_tokens": []}\n' >"$tmp/cut/tokenizer.json"
expect_rc 3 "$bin" import-model --from "$tmp/cut" --out "$tmp/out/m.h5"
expect_out "$tmp/cut/tokenizer.json: "
nothing_at "$tmp/out"

# a tokenizer of another model: its <image> id is not the config's image_token_index
sed 's/"image_token_index": *[0-9]*/"image_token_index": 3/' "$hf/config.json" >"$tmp/cut/config.json"
cp "$tj" "$tmp/cut/tokenizer.json"
if grep -q '"image_token_index": 3' "$tmp/cut/config.json"; then ok; else bad "config.json has no image_token_index to change"; fi
echo old >"$tmp/out/m.h5"
expect_rc 3 "$bin" import-model --from "$tmp/cut" --out "$tmp/out/m.h5"
expect_out "$tmp/cut/tokenizer.json: the tokenizer's <image> id is"
expect_out "the model's image_token_index is 3"
if [ "$(cat "$tmp/out/m.h5")" = old ] && [ "$(ls -A "$tmp/out")" = m.h5 ]; then ok; else bad "the old m.h5 was touched: $(ls -A "$tmp/out")"; fi

# the good one imports, and import-data takes it
rm -f "$tmp/out/m.h5"
expect_rc 0 "$bin" import-model --from "$hf" --out "$tmp/out/m.h5"
expect_rc 0 "$bin" import-data --model "$tmp/out/m.h5" --parquet "$tmp/demo/data/rlaif-v-demo.parquet" \
  --out "$tmp/out/d.h5" --no-progress

echo "test_import_model_tokenizer.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
