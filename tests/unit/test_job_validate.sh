#!/usr/bin/env bash
# orpo-hpc validate end to end: the done-when of issue 2 item 6 (three errors, exit 2), the shipped
# jobs pass, --set naming, paths relative to the job file vs the current directory, --require-files.
set -u
BIN=${ORPO_BIN:?}
SRC=${ORPO_SOURCE_DIR:?}
FIX=${ORPO_FIXTURES:-$SRC/tests/fixtures}
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # check NAME COND-EXIT-STATUS
    if [ "$2" -eq 0 ]; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi
}

# 1. three mistakes -> exactly three FILE:LINE:COL: lines and exit 2
cd "$FIX/jobs"
"$BIN" validate three_errors.yaml >"$tmp/out" 2>"$tmp/err"; rc=$?
cat >"$tmp/want" <<'WANT'
three_errors.yaml:10:9: lora.rank: expected an integer, got 'eight'
three_errors.yaml:11:3: lora.rnak: unknown key; did you mean 'lora.rank'?
three_errors.yaml:17:7: train.lr: must be in (0, 1], got -2.0e-4
WANT
check "three errors: exit 2 (got $rc)" $([ $rc -eq 2 ]; echo $?)
diff "$tmp/want" "$tmp/err" >/dev/null; check "three errors: exactly the three lines" $?
check "three errors: nothing on stdout" $([ ! -s "$tmp/out" ]; echo $?)
[ $fail -eq 0 ] || { echo "--- got:"; cat "$tmp/err"; }

# the same file named from another directory: the file name is printed as given, paths still resolve
cd "$tmp"
"$BIN" validate "$FIX/jobs/three_errors.yaml" 2>"$tmp/err2"; rc=$?
check "three errors from elsewhere: exit 2" $([ $rc -eq 2 ]; echo $?)
check "three errors from elsewhere: 3 lines, full path" \
    $([ "$(grep -c "^$FIX/jobs/three_errors.yaml:[0-9]*:[0-9]*: " "$tmp/err2")" -eq 3 ] && [ "$(wc -l <"$tmp/err2")" -eq 3 ]; echo $?)

# 2. the shipped jobs are clean (missing model/data files are warnings only)
cd "$SRC"
"$BIN" validate jobs/*.yaml 2>"$tmp/err"; rc=$?
check "validate jobs/*.yaml: exit 0 (got $rc)" $([ $rc -eq 0 ]; echo $?)
check "validate jobs/*.yaml: only warnings and ok lines" $(! grep -v -e ': warning: ' -e ': ok' "$tmp/err" >/dev/null; echo $?)
check "validate jobs/*.yaml: one ok per file" $([ "$(grep -c ': ok' "$tmp/err")" -eq "$(ls jobs/*.yaml | wc -l)" ]; echo $?)

# 3. --require-files turns the warnings into errors
"$BIN" validate --require-files jobs/demo.yaml 2>"$tmp/err"; rc=$?
if [ -e demo/model.h5 ] && [ -e demo/data.h5 ]; then
    check "--require-files with demo files present: exit 0" $([ $rc -eq 0 ]; echo $?)
else
    check "--require-files: exit 2" $([ $rc -eq 2 ]; echo $?)
    check "--require-files: error at jobs/demo.yaml:LINE:COL: model.path" \
        $(grep -q '^jobs/demo.yaml:[0-9]*:9: model.path: .*No such file' "$tmp/err"; echo $?)
fi
cd "$FIX/jobs"
"$BIN" validate --require-files --set lora.rank=4 three_errors.yaml 2>"$tmp/err"; rc=$?
check "--require-files with files present adds nothing (3 errors left)" $([ "$(wc -l <"$tmp/err")" -eq 3 ]; echo $?)

# 4. --set: unknown key is an error naming --set; a good --set fixes a bad value
cd "$SRC"
"$BIN" validate jobs/demo.yaml --set lora.rnk=4 2>"$tmp/err"; rc=$?
check "--set unknown key: exit 2" $([ $rc -eq 2 ]; echo $?)
check "--set unknown key: names --set and suggests" \
    $(grep -q "^--set lora.rnk=4: lora.rnk: unknown key in --set; did you mean 'lora.rank'?" "$tmp/err"; echo $?)
"$BIN" validate jobs/demo.yaml --set=train.lr=-1 2>"$tmp/err"; rc=$?
check "--set bad value: exit 2" $([ $rc -eq 2 ]; echo $?)
"$BIN" validate jobs/demo.yaml --set 2>"$tmp/err"; rc=$?
check "--set without a value: exit 2" $([ $rc -eq 2 ]; echo $?)

# 5. paths: inside the file relative to the file, with --set relative to the current directory
cd "$tmp"
"$BIN" validate --print-config "$SRC/jobs/demo.yaml" --set data.path=here/d.h5 >"$tmp/cfg" 2>/dev/null; rc=$?
check "--print-config: exit 0" $([ $rc -eq 0 ]; echo $?)
check "file path resolves against the job file's directory" \
    $(grep -q "^  path: \"$SRC/demo/model.h5\"$" "$tmp/cfg"; echo $?)
check "--set path resolves against the current directory" \
    $(grep -q "^  path: \"$tmp/here/d.h5\"  # --set$" "$tmp/cfg"; echo $?)
check "output_dir resolves against the job file's directory" \
    $(grep -q "^  output_dir: \"$SRC/runs/demo\"$" "$tmp/cfg"; echo $?)
# the printed configuration is itself a valid job, with the same hash
mkdir -p "$tmp/x"
sed -n '/^job:/,$p' "$tmp/cfg" >"$tmp/x/frozen.yaml"
"$BIN" validate --print-config "$tmp/x/frozen.yaml" >"$tmp/cfg2" 2>/dev/null; rc=$?
check "frozen configuration validates" $([ $rc -eq 0 ]; echo $?)
check "frozen configuration has the same hash" \
    $([ "$(grep '^# result hash' "$tmp/cfg")" = "$(grep '^# result hash' "$tmp/cfg2")" ]; echo $?)

# 6. schema printing equals the committed schema; usage errors
"$BIN" validate --print-schema | cmp -s - "$SRC/schemas/job.schema.json"
check "--print-schema == schemas/job.schema.json" $?
"$BIN" validate 2>/dev/null; rc=$?
check "no file: exit 2" $([ $rc -eq 2 ]; echo $?)
"$BIN" validate --bogus jobs/demo.yaml 2>/dev/null; rc=$?
check "unknown option: exit 2" $([ $rc -eq 2 ]; echo $?)
"$BIN" validate "$tmp/does-not-exist.yaml" 2>"$tmp/err"; rc=$?
check "missing job file: exit 2 with its name" $([ $rc -eq 2 ] && grep -q 'does-not-exist.yaml: cannot open' "$tmp/err"; echo $?)

exit $fail
