#!/usr/bin/env bash
# Reproduces the shipped default model (depthart/assets/default.safetensors) from nothing, on CPU:
#   1. the `small` VQ-VAE on procedural scenes (RGB + depth),
#   2. the transformer twice from the same VQ-VAE, same seed, steps and batch:
#      DepthART (self-refinement) and VAR teacher forcing, side by side (one thread each),
#   3. both continued from their weights on scenes they have not seen (synthetic@FIRST), lr restarted at
#      the first stage's last value, EMA weights kept,
#   4. both stages on the 200 held-out procedural scenes (median-scale AbsRel / delta1) and Middlebury,
#   5. the best of the four (lowest held-out AbsRel), in fp16, becomes depthart/assets/default.safetensors.
# docs/experiments.md has the measured times and numbers (2-core VM: about 4 hours).
# Usage: bash scripts/train_default.sh [RUN_ROOT]   (env: VAE2_STEPS, STEPS, STEPS2, BATCH, LR)
set -euo pipefail
ROOT=${1:-runs/default}
VAE2_STEPS=${VAE2_STEPS:-300}
STEPS=${STEPS:-600}
STEPS2=${STEPS2:-1600}
BATCH=${BATCH:-16}
LR=${LR:-5e-4}
mkdir -p "$ROOT"

done_run() { [ -f "$1/metrics.jsonl" ] && grep -q "\"step\": $2," "$1/metrics.jsonl"; }
resume_flag() { [ -f "$1/train_state.pt" ] && echo --resume || true; }

# VQ-VAE, phase 1: images and depth maps weighted alike (lr 5e-4)
if ! done_run "$ROOT/vae1" 400; then
  depthart train-vqvae --preset small --data synthetic -o "$ROOT/vae1" --steps 400 --batch-size "$BATCH" \
    --lr 5e-4 --lr-step 400 --lr-gamma 0.5 --save-every 100 --workers 1 --seed 0 $(resume_flag "$ROOT/vae1")
fi
# phase 2: depth maps weighted 4x (their reconstruction bounds the depth model; the images only
# condition it), lr 2.5e-4 halved after 200 steps
if ! done_run "$ROOT/vae" "$VAE2_STEPS"; then
  depthart train-vqvae --init "$ROOT/vae1/model.safetensors" --data synthetic -o "$ROOT/vae" --steps "$VAE2_STEPS" \
    --batch-size "$BATCH" --lr 2.5e-4 --lr-step 200 --lr-gamma 0.5 --depth-weight 4 --save-every 100 --workers 1 \
    --seed 1 $(resume_flag "$ROOT/vae")
fi

for method in depthart var; do
  done_run "$ROOT/$method" "$STEPS" && continue
  OMP_NUM_THREADS=1 depthart train --init "$ROOT/vae/model.safetensors" --method "$method" --data synthetic \
    -o "$ROOT/$method" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --lr-step 400 --lr-gamma 0.5 \
    --save-every 100 --keep-checkpoints --seed 0 $(resume_flag "$ROOT/$method") > "$ROOT/$method.log" 2>&1 &
done
wait
for method in depthart var; do
  done_run "$ROOT/$method" "$STEPS" || { echo "stage 1 $method did not finish: see $ROOT/$method.log" >&2; exit 1; }
done

# stage 2: from stage 1's weights, fresh optimizer, the next scenes of the stream, lr restarted at
# stage 1's last value and halved every 600 steps, EMA 0.998 (stage 1's checkpoints swing between
# evaluations)
LR2=$(python -c "print($LR * 0.5 ** ($STEPS // 400))")
for method in depthart var; do
  if [ -f "$ROOT/${method}2/config.json" ] && [ "$ROOT/$method/model.safetensors" -nt "$ROOT/${method}2/config.json" ]; then
    echo "$ROOT/${method}2 started from older stage-1 weights (stage 1 ran on); move it away to redo stage 2" >&2
    exit 1
  fi
  if ! done_run "$ROOT/${method}2" "$STEPS2"; then
    OMP_NUM_THREADS=1 depthart train --init "$ROOT/$method/model.safetensors" --method "$method" \
      --data "synthetic@$((STEPS * BATCH))" -o "$ROOT/${method}2" --steps "$STEPS2" --batch-size "$BATCH" --lr "$LR2" \
      --lr-step 600 --lr-gamma 0.5 --ema 0.998 --save-every 100 --keep-checkpoints --seed 0 $(resume_flag "$ROOT/${method}2") \
      > "$ROOT/${method}2.log" 2>&1 &
  fi
done
wait
for method in depthart var; do
  done_run "$ROOT/${method}2" "$STEPS2" || { echo "stage 2 $method did not finish: see $ROOT/${method}2.log" >&2; exit 1; }
done

for method in depthart var; do
  for ckpt in "$method/model.safetensors" "${method}2/model_ema.safetensors"; do
    tag=$(dirname "$ckpt")
    depthart eval -d procedural --protocol depthart -c "$ROOT/$ckpt" -o "$ROOT/eval_$tag" --overwrite
    depthart eval -d middlebury --protocol depthart -c "$ROOT/$ckpt" -o "$ROOT/eval_mb_$tag" --overwrite
  done
done
python scripts/ship_default.py "$ROOT"
