#!/usr/bin/env bash
# Reproduces the shipped default model (depthart/assets/default.safetensors) from nothing, on CPU:
#   1. the `small` VQ-VAE on procedural scenes (RGB + depth),
#   2. the transformer twice from the same VQ-VAE, same seed, steps and batch:
#      DepthART (self-refinement) and VAR teacher forcing, side by side (one thread each),
#   3. both on the 200 held-out procedural scenes (median-scale AbsRel / delta1) and Middlebury,
#   4. the better one, in fp16, becomes depthart/assets/default.safetensors.
# docs/experiments.md has the measured times and numbers (2-core VM: about 2 hours).
# Usage: bash scripts/train_default.sh [RUN_ROOT]   (env: VAE_STEPS, STEPS, BATCH, LR)
set -euo pipefail
ROOT=${1:-runs/default}
VAE_STEPS=${VAE_STEPS:-600}
STEPS=${STEPS:-600}
BATCH=${BATCH:-16}
LR=${LR:-5e-4}
mkdir -p "$ROOT"

if [ ! -f "$ROOT/vae/model.safetensors" ] || ! grep -q "\"step\": $VAE_STEPS," "$ROOT/vae/metrics.jsonl" 2>/dev/null; then
  resume=(); [ -f "$ROOT/vae/train_state.pt" ] && resume=(--resume)
  depthart train-vqvae --preset small --data synthetic -o "$ROOT/vae" --steps "$VAE_STEPS" --batch-size "$BATCH" \
    --lr 5e-4 --lr-step 400 --lr-gamma 0.5 --save-every 100 --workers 1 --seed 0 "${resume[@]}"
fi

for method in depthart var; do
  resume=(); [ -f "$ROOT/$method/train_state.pt" ] && resume=(--resume)
  OMP_NUM_THREADS=1 depthart train --init "$ROOT/vae/model.safetensors" --method "$method" --data synthetic \
    -o "$ROOT/$method" --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --lr-step 400 --lr-gamma 0.5 \
    --save-every 100 --seed 0 "${resume[@]}" > "$ROOT/$method.log" 2>&1 &
done
wait

for method in depthart var; do
  depthart eval -d procedural --protocol depthart -c "$ROOT/$method/model.safetensors" -o "$ROOT/eval_$method" --overwrite
  depthart eval -d middlebury --protocol depthart -c "$ROOT/$method/model.safetensors" -o "$ROOT/eval_mb_$method" --overwrite
done
python scripts/ship_default.py "$ROOT"
