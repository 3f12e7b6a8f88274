#!/usr/bin/env bash
# orpo-hpc inspect on a file written by the h5x test program (unit_test_h5x --sample), on a
# safetensors fixture, and on bad input; h5dump cross-checks that the bf16 named type decodes.
set -uo pipefail
bin=${ORPO_BIN:?}
build=${ORPO_BUILD_DIR:?}
fix=${ORPO_FIXTURES:?}
writer="$build/unit_test_h5x"
[ -x "$writer" ] || { echo "missing $writer"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-inspect-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
has() { if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: expected '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
hasnt() { if grep -qF -- "$2" <<<"$1"; then echo "FAIL: did not expect '$2' in:"; echo "$1"; fails=$((fails + 1)); fi; }
code() { if [ "$1" != "$2" ]; then echo "FAIL: $3: exit $1, expected $2"; fails=$((fails + 1)); fi; }

"$writer" --sample "$tmp/s.h5" || { echo "FAIL: writing the sample"; exit 1; }

out=$("$bin" inspect "$tmp/s.h5" 2>&1); code $? 0 "inspect"
has "$out" "s.h5: HDF5, superblock version 3"
has "$out" '@format = "orpo-hpc/sample"'
has "$out" "@format_version = 1"
hasnt "$out" "@note"          # not a key attribute
hasnt "$out" "@block_size"
has "$out" "  layers/ (group, 1 members)"
has "$out" "      w_bf16 dataset bfloat16 (named type /types/bfloat16) [2, 3] contiguous, 12 bytes stored"
has "$out" "      w_f32 dataset float32 [2, 3] contiguous, 24 bytes stored"
has "$out" "    ids dataset int32 [6] chunked [6] filters shuffle+deflate(1)"
has "$out" "    empty dataset uint8 [0] contiguous"
has "$out" "  scalar dataset int64 scalar contiguous, 8 bytes stored"
has "$out" "    train dataset compound{step:int64, loss:float32, lr:float64} [2] max [unlimited] chunked [64]"
has "$out" "    bfloat16 named datatype bfloat16"
has "$out" "          deep dataset uint16 [6]"

out=$("$bin" inspect "$tmp/s.h5" --attrs --max-depth 1 2>&1); code $? 0 "inspect --attrs --max-depth 1"
has "$out" '@note = "only shown with --attrs"'
has "$out" "  a/ (group, 1 members)"
has "$out" "    ... (deeper than --max-depth 1)"
hasnt "$out" "deep dataset"
hasnt "$out" "w_bf16"

out=$("$bin" inspect --attrs "$tmp/s.h5" 2>&1); code $? 0 "inspect --attrs"
has "$out" "        @block_size = 64"

# HDF5's own tools decode the bf16 named type
if command -v h5dump >/dev/null; then
    out=$(h5dump -d /layers/0/w_bf16 "$tmp/s.h5" 2>&1); code $? 0 "h5dump"
    has "$out" 'DATATYPE  "/types/bfloat16"'
    has "$out" "1.5, -2.25, 3"
    has "$out" "0.5, 0.000999451, -7"
fi

out=$("$bin" inspect "$fix/safetensors/basic.safetensors" 2>&1); code $? 0 "inspect safetensors"
has "$out" "basic.safetensors: safetensors, 9 tensors, 144 bytes of tensor data"
has "$out" '@format = "pt"'
has "$out" "  layers.0.w_f16 F16 [4, 5] bytes [96, 136)"
has "$out" "  scalar F32 [] bytes [64, 68)"

# bad input: missing (4), not HDF5 (3), broken safetensors (3), bad arguments (2)
out=$("$bin" inspect "$tmp/missing.h5" 2>&1); code $? 4 "missing file"
has "$out" "missing.h5: cannot open: No such file or directory"
echo "plain text" > "$tmp/text.h5"
out=$("$bin" inspect "$tmp/text.h5" 2>&1); code $? 3 "text file"
has "$out" "text.h5: not an HDF5 file"
head -c 20 "$fix/safetensors/basic.safetensors" > "$tmp/cut.safetensors"
out=$("$bin" inspect "$tmp/cut.safetensors" 2>&1); code $? 3 "truncated safetensors"
has "$out" "cut.safetensors: header length"
head -c 3000 "$tmp/s.h5" > "$tmp/cut.h5"
out=$("$bin" inspect "$tmp/cut.h5" 2>&1); code $? 3 "truncated HDF5"
has "$out" "cut.h5: cannot open HDF5 file (damaged, or still open for writing): HDF5: truncated file"
out=$("$bin" inspect 2>&1); code $? 2 "no file"
out=$("$bin" inspect "$tmp/s.h5" --max-depth x 2>&1); code $? 2 "bad --max-depth"
has "$out" "--max-depth needs a number"
out=$("$bin" inspect "$tmp/s.h5" --bogus 2>&1); code $? 2 "unknown option"

if [ "$fails" != 0 ]; then echo "test_inspect: $fails failures"; exit 1; fi
echo "test_inspect: all checks passed"
