#!/usr/bin/env bash
# Reproduces the shipped default model (depthart/assets/default.safetensors) from nothing, on a
# 2-core CPU in about 2.5 hours (docs/experiments.md has the measured times and numbers):
#   1. 32,000 procedural training scenes rendered once (depthart render-data),
#   2. the `small` VQ-VAE (16x16 latent grid at 64 px) on their images and depth maps,
#   3. the transformer pre-trained with VAR teacher forcing (the paper starts DepthART from a
#      trained VAR), every scene's VQ-VAE outputs computed once (--cache-latents), bf16 on CPU,
#   4. from those weights, the same wall time of (a) more teacher forcing and (b) DepthART,
#      side by side (one thread each): the paper's comparison at equal budget,
#   5. every candidate on the held-out procedural scenes, then the best (scripts/ship_default.py).
# Each stage resumes (--resume) when re-run after an interruption; finished stages are skipped.
# Usage: bash scripts/train_default.sh [RUN_ROOT]   (env: SCENES, VAE_STEPS, TF_STEPS, FT_STEPS_TF, FT_STEPS_DA)
set -euo pipefail
# passive OpenMP waits: with another process on the cores, spinning threads made steps 7x slower (docs/training.md)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
ROOT=${1:-runs/default}
SCENES=${SCENES:-32000}
VAE_STEPS=${VAE_STEPS:-800}
TF_STEPS=${TF_STEPS:-2200}
# stage 4 gives both methods the same wall time: steps from their measured speeds (docs/experiments.md)
FT_STEPS_TF=${FT_STEPS_TF:-600}
FT_STEPS_DA=${FT_STEPS_DA:-600}
mkdir -p "$ROOT"

done_run() { [ -f "$1/metrics.jsonl" ] && grep -q "\"step\": $2," "$1/metrics.jsonl"; }
resume_flag() { [ -f "$1/train_state.pt" ] && echo --resume || true; }

# 1. training scenes (seeds 0..SCENES-1; the held-out test scenes start at 1e9)
[ -f "$ROOT/scenes64/scenes.json" ] || depthart render-data -o "$ROOT/scenes64" -n "$SCENES" --size 64

# 2. VQ-VAE: images and depth maps of each batch together, depth weighted 2x, bf16 autocast
if ! done_run "$ROOT/vae" "$VAE_STEPS"; then
  depthart train-vqvae --preset small --data "rendered:$ROOT/scenes64" -o "$ROOT/vae" --steps "$VAE_STEPS" \
    --batch-size 16 --lr 8e-4 --lr-schedule cosine --warmup 50 --depth-weight 2 --bf16-cpu --save-every 100 \
    --keep-checkpoints --seed 0 $(resume_flag "$ROOT/vae")
fi

# 3. teacher-forcing pre-training of the transformer (both cores)
COMMON=(--data "rendered:$ROOT/scenes64" --cache-latents --bf16-cpu --batch-size 16 --save-every 100 --keep-checkpoints)
if ! done_run "$ROOT/tf" "$TF_STEPS"; then
  depthart train --method var --preset small --init-vae "$ROOT/vae/model.safetensors" -o "$ROOT/tf" "${COMMON[@]}" \
    --steps "$TF_STEPS" --lr 1e-3 --warmup 100 --lr-schedule cosine --ema 0.998 --seed 0 $(resume_flag "$ROOT/tf")
fi

# 4. equal wall time from the pre-trained EMA weights: teacher forcing vs DepthART, one thread each
for pair in "var:$FT_STEPS_TF:tf2" "depthart:$FT_STEPS_DA:da"; do
  IFS=: read -r method steps out <<< "$pair"
  done_run "$ROOT/$out" "$steps" && continue
  OMP_NUM_THREADS=1 depthart train --method "$method" --init "$ROOT/tf/model_ema.safetensors" -o "$ROOT/$out" \
    "${COMMON[@]}" --steps "$steps" --lr 3e-4 --warmup 20 --lr-schedule cosine --ema 0.995 --seed 1 \
    $(resume_flag "$ROOT/$out") > "$ROOT/$out.log" 2>&1 &
done
wait
for pair in "tf2:$FT_STEPS_TF" "da:$FT_STEPS_DA"; do
  IFS=: read -r out steps <<< "$pair"
  done_run "$ROOT/$out" "$steps" || { echo "stage 4 $out did not finish: see $ROOT/$out.log" >&2; exit 1; }
done

# 5. held-out scenes (64 px, median scale, with baselines), greedy and expect; then ship the best
for ckpt in tf/model_ema tf2/model_ema da/model_ema; do
  for sampler in greedy expect; do
    python scripts/diagnose_model.py "$ROOT/$ckpt.safetensors" 300 --sampler "$sampler" --prior-cache "$ROOT/prior64.npy" \
      --json "$ROOT/diag_$(dirname $ckpt)_$sampler.json" > "$ROOT/diag_$(dirname $ckpt)_$sampler.txt"
  done
done
python scripts/ship_default.py "$ROOT"
