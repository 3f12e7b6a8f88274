#!/usr/bin/env bash
# h5table.sh — prints a compound HDF5 table (a metrics.h5 table: train, val, segments) as text, one row a
# line, "name=value" fields separated by spaces, through h5dump (hdf5-tools); no Python.
#
#   tools/slurm/h5table.sh FILE.h5 /DATASET [-x COLUMN]...     -x leaves a column out (repeatable)
#
# Floats are printed with 17 significant digits (%.17g), so equal text means bit-equal doubles. Strings keep
# their double quotes; a value must fit on one line (numbers, the segments table; not the samples' texts,
# which may hold newlines). Exit 1 when h5dump fails (missing file or dataset), 2 on bad arguments.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: h5table.sh FILE.h5 /DATASET [-x COLUMN]..." >&2; exit 2; }
file=$1
dset=$2
shift 2
skip=" "
while [ $# -gt 0 ]; do
  case $1 in
    -x) [ $# -ge 2 ] || { echo "h5table.sh: -x needs a column" >&2; exit 2; }; skip="$skip$2 "; shift 2 ;;
    *) echo "h5table.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
dump=$(h5dump -d "$dset" -y -w 0 -m %.17g "$file") || exit 1
awk -v skip="$skip" '
  # the member names, in order, from the DATATYPE H5T_COMPOUND block (a name ends its member: "name";)
  !indata && /"[^"]*";[ ]*$/ { n = $0; sub(/";[ ]*$/, "", n); sub(/^.*"/, "", n); names[++nf] = n; next }
  /^[ ]*DATA[ ]*\{/ { indata = 1; next }
  indata && /^[ ]*\{[ ]*$/ { k = 0; row = ""; inrow = 1; next }
  indata && inrow && /^[ ]*\},?[ ]*$/ { print row; inrow = 0; next }
  indata && inrow { v = $0; sub(/^[ ]+/, "", v); sub(/,[ ]*$/, "", v); k++
                    if (index(skip, " " names[k] " ") == 0) row = row (row == "" ? "" : " ") names[k] "=" v }
' <<<"$dump"
