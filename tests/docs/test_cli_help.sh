#!/usr/bin/env bash
# docs/cli.md and `orpo-hpc help` agree (issue 16 point 14): the command table of docs/cli.md has one row per
# command that `orpo-hpc --help` lists, and the options (--name) in a row's first cell are exactly the options of
# that command's usage lines in `orpo-hpc help COMMAND`.
set -uo pipefail
bin=${ORPO_BIN:?}
src=${ORPO_SOURCE_DIR:?}
fails=0
doc="$src/docs/cli.md"
cmds=$("$bin" --help | awk '/^commands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { on = 0 }')
[ -n "$cmds" ] || { echo "FAIL: no commands in orpo-hpc --help"; exit 1; }
# first cells of the command table: lines "| `NAME ...` | ..." between "## Commands" and the next heading
cells=$(awk '/^## Commands/ { on = 1; next } on && /^## / { on = 0 } on && /^\| `/ { split($0, c, "` \\|"); print substr(c[1], 4) }' "$doc" |
        sed 's/\\|/|/g')
opts() { grep -o -- '--[a-z][a-z-]*' | sort -u | tr '\n' ' '; }
for c in $cmds; do
    row=$(grep -E "^$c( |$)" <<<"$cells")
    if [ -z "$row" ]; then echo "FAIL: docs/cli.md has no row for '$c' (orpo-hpc --help lists it)"; fails=$((fails + 1)); continue; fi
    # the usage lines: from "usage:" up to the first description line (two spaces, then text)
    want=$("$bin" help "$c" | awk '/^usage:/ { on = 1 } on && /^  [^ ]/ { on = 0 } on' | opts)
    got=$(opts <<<"$row")
    if [ "$want" != "$got" ]; then
        echo "FAIL: $c: options of orpo-hpc help: '$want'; of docs/cli.md: '$got'"
        fails=$((fails + 1))
    fi
done
# and no row for a command that does not exist
while read -r row; do
    name=${row%% *}
    grep -qx -- "$name" <<<"$cmds" || { echo "FAIL: docs/cli.md documents '$name', which orpo-hpc --help does not list"; fails=$((fails + 1)); }
done <<<"$cells"
echo "$fails failed"
[ $fails -eq 0 ]
