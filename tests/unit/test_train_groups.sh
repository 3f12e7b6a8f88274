#!/usr/bin/env bash
# lora.targets that mix the optimiser groups (docs/jobs.md, train.lr_groups) through the command line, on the demo
# model: `validate`, one `train` step and `eval` of its checkpoint succeed for each mix (vision:* LoRA with
# lm_head and/or mm_projector LoRA used to stop with "trainable tensors of group lora are not contiguous", exit 1),
# and train.lr_groups.mm_projector is the learning rate of the projector's LoRA adapters: after one AdamW step from
# B = 0 (no warm-up), every element of a B matrix has moved by at most its group's lr, so the projector's B stay
# within 1e-9 while the other groups' B move by about 1e-3 (they used to train at train.lr, in group lora).
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

tmp=$(mktemp -d "${TMPDIR:-/tmp}/orpo-train-groups-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
D=$tmp/D
expect_rc 0 "$bin" make-demo --out "$D" --pairs 24 --seed 3
expect_rc 0 "$bin" import-model --from "$D/model" --out "$D/model.h5"
expect_rc 0 "$bin" import-data --parquet "$D/data/rlaif-v-demo.parquet" --model "$D/model.h5" --out "$D/data.h5" \
  --val-fraction 0.25 --seed 1
[ "$fail" -eq 0 ] || { echo "test_train_groups: set-up failed"; exit 1; }
cat > "$tmp/job.yaml" <<EOF
job:
  name: groups
  output_dir: $tmp/run
model:
  path: $D/model.h5
lora:
  rank: 4
  alpha: 8
  targets: [q_proj, v_proj]
data:
  path: $D/data.h5
  val_fraction: 0.25
  seed: 1                           # as imported (--seed 1): train checks it
train:
  max_steps: 1
  micro_batch_pairs: 2
  grad_accum: 1
  lr: 1.0e-3
  warmup_steps: 0
  seed: 1
checkpoint:
  every_steps: 1
eval:
  every_steps: 0
  max_pairs: 2
  samples: 0
runtime:
  device: cpu
  threads: 1
EOF

n=0
run_mix() { # run_mix --set ... : validate, then train one step into a fresh directory
  n=$((n + 1))
  expect_rc 0 "$bin" validate "$tmp/job.yaml" "$@"
  expect_rc 0 "$bin" train "$tmp/job.yaml" --set "job.output_dir=$tmp/run$n" "$@"
  if [ -s "$tmp/run$n/checkpoints/step-00000001.h5" ]; then ok; else bad "no checkpoint after one step of: $*"; fi
  expect_rc 0 "$bin" eval "$tmp/job.yaml" --set "job.output_dir=$tmp/run$n" "$@"
}
run_mix --set 'lora.targets=[q_proj, vision:fc1, lm_head]'
run_mix --set 'lora.targets=[q_proj, vision:fc1, mm_projector]'
run_mix --set 'lora.targets=[q_proj, vision:fc1, lm_head, mm_projector]'
run_mix --set 'lora.targets=[vision:fc1, lm_head, mm_projector]' --set lora.train_new_token_embeddings=true
run_mix --set 'lora.targets=[q_proj, lm_head, vision:q_proj, vision:fc2]' --set 'train.full_modules=[mm_projector]' \
  --set lora.vision_layers=1
run_mix --set 'lora.targets=[mm_projector, vision:out_proj]' --set lora.train_new_token_embeddings=true
run_mix --set 'lora.targets=[lm_head, mm_projector]'

# lr_groups.mm_projector applies to the projector's adapters; validate does not call it unused
mix=(--set 'lora.targets=[q_proj, lm_head, mm_projector]' --set 'train.lr_groups={mm_projector: 1e-9}')
expect_rc 0 "$bin" validate "$tmp/job.yaml" "${mix[@]}"
if grep -q "has no effect" <<<"$out"; then bad "validate warns about lr_groups.mm_projector: $out"; else ok; fi
expect_rc 0 "$bin" train "$tmp/job.yaml" --set "job.output_dir=$tmp/lr" "${mix[@]}"
ck=$tmp/lr/checkpoints/step-00000001.h5
maxabs() { # the largest |value| of /params/<name> of the checkpoint
  h5dump -d "/params/$1" -y -w 0 -m %.9g -o "$tmp/values.txt" "$ck" >/dev/null 2>&1 || { echo missing; return; }
  tr -s ' ,\n' '\n' < "$tmp/values.txt" | awk '/^-?[0-9]/ { a = $1 < 0 ? -$1 : $1; if (a > m) m = a } END { printf "%.9g\n", m }'
}
within() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x != "missing" && x + 0 > lo && x + 0 <= hi) }'; }
for t in multi_modal_projector.linear_1 multi_modal_projector.linear_2; do
  m=$(maxabs "lora:$t:B")
  if within "$m" 0 2e-9; then ok; else bad "$t LoRA B moved by $m after one step, expected at most lr_groups.mm_projector = 1e-9"; fi
  g=$(h5dump -a "/params/lora:$t:B/group" "$ck" 2>/dev/null | grep -o '"[a-z_]*"' | tail -1)
  if [ "$g" = '"mm_projector"' ]; then ok; else bad "$t LoRA B: checkpoint group $g, expected \"mm_projector\""; fi
done
for t in language_model.model.layers.0.self_attn.q_proj language_model.lm_head; do
  m=$(maxabs "lora:$t:B")
  if within "$m" 1e-4 2e-3; then ok; else bad "$t LoRA B moved by $m after one step, expected about train.lr = 1e-3"; fi
done
echo "test_train_groups: $n target mixes; $pass passed, $fail failed"
[ "$fail" -eq 0 ]
