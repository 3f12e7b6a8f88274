# demo_inputs.sh — sourced by the shell tests that train the demo job (needs $bin, the orpo-hpc under test).
#   demo_inputs DIR [PAIRS]   make-demo --out DIR --pairs PAIRS (default 40), import-model -> DIR/model.h5,
#                             import-data -> DIR/data.h5 (--val-fraction 0.25 --seed 1, as jobs/demo.yaml expects);
#                             on a failure: "FAIL: <step>" and exit 1
demo_inputs() {
    local d=$1 n=${2:-40}
    "$bin" make-demo --out "$d" --pairs "$n" >/dev/null 2>&1 || { echo "FAIL: make-demo --pairs $n"; exit 1; }
    "$bin" import-model --from "$d/model" --out "$d/model.h5" >/dev/null 2>&1 || { echo "FAIL: import-model"; exit 1; }
    "$bin" import-data --parquet "$d/data/rlaif-v-demo.parquet" --model "$d/model.h5" --out "$d/data.h5" \
        --val-fraction 0.25 --seed 1 >/dev/null 2>&1 || { echo "FAIL: import-data"; exit 1; }
}
