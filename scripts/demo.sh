#!/usr/bin/env bash
# demo.sh — what `make demo` runs after the build: the whole pipeline on the embedded tiny demo, on the CPU.
#
#   scripts/demo.sh [path/to/orpo-hpc]          (default build/release/orpo-hpc)
#
#   1. make-demo     a tiny LLaVA-NeXT in HuggingFace format (demo/model) and 6,000 synthetic preference
#                    pairs with their PNG images, RLAIF-V-shaped Parquet (demo/data)
#   2. import-model  demo/model -> demo/model.h5 (NF4), the importer of the real 7B model
#   3. import-data   the Parquet file -> demo/data.h5 (tokenised, anyres-preprocessed, 25% held out)
#   4. train         jobs/demo.yaml from scratch (--restart: an earlier demo run is moved aside, not deleted): to step
#                    50, the hallucination benchmark (eval --hallucination; resumed 50 steps at a time until 90% of
#                    its answers parse), resume to the end, the benchmark again
#   5. plot          runs/demo/curves.png, when /usr/bin/python3 has h5py and matplotlib
#
# Everything is deterministic: a rerun gives the same files and the same numbers. About 5 minutes on 2 cores.
set -euo pipefail
bin=${1:-build/release/orpo-hpc}
show=$bin
cd "$(dirname "$0")/.."
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
[ -x "$bin" ] || { echo "demo.sh: $bin is not an executable (build first: make build)" >&2; exit 2; }

t0=$SECONDS
early=50    # the "before" of the hallucination benchmark: the earliest checkpoint (every 50 steps, at most 250) at
            # which at least 90% of the answers parse, i.e. the model answers in the template but has learnt little
            # from the images yet; the untrained model answers random tokens, which state nothing and so cannot
            # hallucinate (docs/demo.md, "Hallucination benchmark")
step() { echo; echo "== $*"; }

"$bin" --version
step "1/5 make-demo: tiny LLaVA-NeXT + synthetic hallucination pairs -> demo/"
rm -rf demo/model demo/data demo/model.h5 demo/data.h5
"$bin" make-demo --out demo
step "2/5 import-model: demo/model -> demo/model.h5"
"$bin" import-model --from demo/model --out demo/model.h5
step "3/5 import-data: demo/data/rlaif-v-demo.parquet -> demo/data.h5"
"$bin" import-data --parquet demo/data/rlaif-v-demo.parquet --model demo/model.h5 --out demo/data.h5 \
    --val-fraction 0.25 --seed 1
"$bin" validate jobs/demo.yaml
step "4/5 train jobs/demo.yaml (ORPO + QLoRA on the CPU), with the hallucination benchmark from step $early and at the end"
t_train=$SECONDS
"$bin" train --restart jobs/demo.yaml --set train.max_steps=$early
t_train=$((SECONDS - t_train))
halluc() { # the benchmark of the newest checkpoint: records it in metrics.h5, returns "rate chair answered items"
    "$bin" eval jobs/demo.yaml --hallucination --json >runs/demo/halluc-$1.json
    sed -n 's/.*"n": \([0-9]*\), "answered": \([0-9]*\),.*"rate": \([0-9.]*\), "chair": \([0-9.]*\).*/\3 \4 \2 \1/p' \
        runs/demo/halluc-$1.json
}
coverage() { # "covered of objects" of the descriptions in runs/demo/halluc-$1.json
    sed -n 's/.*"objects": \([0-9]*\), "covered": \([0-9]*\), "coverage": \([0-9.]*\).*/\3 (\2 of \1)/p' runs/demo/halluc-$1.json
}
kinds() { # the rate per question kind of runs/demo/halluc-$1.json, 2 decimals
    sed -n 's/.*"rate_by_kind": {\(.*\)}}.*/\1/p' runs/demo/halluc-$1.json |
        awk -F', ' '{ for (i = 1; i <= NF; i++) { split($i, kv, ": "); gsub(/"/, "", kv[1]);
                      printf "%s%s %.2f", (i > 1 ? ", " : ""), kv[1], kv[2] } }'
}
while :; do
    read -r rate0 chair0 ans0 n0 < <(halluc before)
    echo "hallucination at step $early: rate $rate0, CHAIR $chair0, $ans0 of $n0 answers parse (runs/demo/halluc-before.json)"
    [ $((ans0 * 10)) -lt $((n0 * 9)) ] && [ $early -lt 250 ] || break
    early=$((early + 50))
    t1=$SECONDS
    "$bin" resume jobs/demo.yaml --set train.max_steps=$early
    t_train=$((t_train + SECONDS - t1))
done
t1=$SECONDS
"$bin" resume jobs/demo.yaml
t_train=$((t_train + SECONDS - t1))
read -r rate1 chair1 ans1 n1 < <(halluc after)

step "5/5 plot"
plot="(not drawn: /usr/bin/python3 lacks h5py or matplotlib; Debian: apt-get install python3-h5py python3-matplotlib)"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import h5py, matplotlib' 2>/dev/null; then
    if /usr/bin/python3 tools/plot_metrics.py runs/demo/metrics.h5 -o runs/demo/curves.png; then
        plot="runs/demo/curves.png"
    else
        plot="(tools/plot_metrics.py failed; see above)"
    fi
fi
echo "curves: $plot"
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    /usr/bin/python3 tools/samples_page.py runs/demo/metrics.h5 --data demo/data.h5 -o runs/demo/samples.md || true
fi

cat <<EOF

== hallucination benchmark (orpo-hpc eval --hallucination; 120 held-out scenes; docs/demo.md)
  before (step $early): rate $rate0  CHAIR $chair0  ($ans0 of $n0 answers parse)
  after  (final):    rate $rate1  CHAIR $chair1  ($ans1 of $n1 answers parse)
  reduction:         $(awk -v a="$rate0" -v b="$rate1" 'BEGIN { if (b > 0) printf "%.1fx", a / b; else print "all gone" }') (rate)
  rate by kind before: $(kinds before)
               after:  $(kinds after)
  description coverage (objects of the scenes that the descriptions name; saying less would lower it):
               before $(coverage before), after $(coverage after)
EOF
cat <<EOF

== demo done in $((SECONDS - t0)) s (training $t_train s)
  model:        demo/model (HF directory), demo/model.h5 (imported, NF4)
  data:         demo/data (PNG images, pairs.jsonl, rlaif-v-demo.parquet), demo/data.h5 (imported)
  checkpoints:  runs/demo/checkpoints/
  metrics:      runs/demo/metrics.h5 (orpo-hpc inspect runs/demo/metrics.h5)
  curves:       $plot
  resume:       $show resume jobs/demo.yaml
                (after an interruption, e.g. Ctrl-C during training: continues from the newest checkpoint)
  evaluate:     $show eval jobs/demo.yaml   (the newest checkpoint on the validation split)
  plot again:   /usr/bin/python3 tools/plot_metrics.py runs/demo/metrics.h5
EOF
