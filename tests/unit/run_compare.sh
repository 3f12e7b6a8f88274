# run_compare.sh — sourced by shell tests that compare two training runs bit for bit (the caller defines bad()).
#   train_rows DIR              the deterministic fields of DIR/metrics.h5's train table (step ... grad_norm: the
#                               first 14 of each row) as exact hex floats, one per line
#   same_run DIR_A DIR_B WHAT [STEPS]   the two runs' train rows and their newest checkpoints' /params, /adam_m,
#                               /adam_v are identical (STEPS rows expected, default 3); bad() for each difference
train_rows() { h5dump -m %a -d /train "$1/metrics.h5" | awk '/^   \([0-9]+\): \{/ {k = 0; next} /^ *[-0-9x]/ {k++; if (k <= 14) print}'; }
same_run() {
    local a b n=${4:-3}
    a=$(train_rows "$1"); b=$(train_rows "$2")
    [ -n "$a" ] && [ "$(wc -l <<<"$a")" = $((n * 14)) ] || bad "$3: train metrics of $1: $(wc -l <<<"$a") values, expected $n x 14"
    [ "$a" = "$b" ] || { bad "$3: train metrics differ"; diff <(echo "$a") <(echo "$b") | head; }
    local ca cb
    ca=$(ls "$1"/checkpoints/step-*.h5 | tail -1); cb=$(ls "$2"/checkpoints/step-*.h5 | tail -1)
    for g in params adam_m adam_v; do
        h5diff -q "$ca" "$cb" "/$g" "/$g" >/dev/null 2>&1 || bad "$3: checkpoint /$g differs ($ca, $cb)"
    done
}
