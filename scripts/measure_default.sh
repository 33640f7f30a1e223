#!/usr/bin/env bash
# The measurements that follow shipping a new default (scripts/ship_default.py): every figure the README,
# docs/experiments.md, docs/precision.md and docs/benchmarks.md quote for the shipped model, each beside its
# baselines, written under OUT. About 20 minutes on one core of the 2-core dev VM; stop other jobs for the bench.
#   1. the shipped fp16 file on the 300 held-out procedural scenes (`expect` with prior map, constant, grey-image and
#      shuffled baselines; greedy with shuffled: scripts/diagnose_model.py),
#   2. Middlebury (one photo) under both protocols (constant baseline in the summary),
#   3. export, then fp16 and u8s8 int8 bundles with their accuracy reports (192 held-out scenes + Middlebury),
#   4. a one-thread bench: eager vs the fp32 and u8s8 bundles, interleaved.
# Usage: bash scripts/measure_default.sh [OUT]   (env: SCENES=300, REPORT_IMAGES=192, RUNS=20, SKIP_BENCH=1)
set -euo pipefail
OUT=${1:-runs/measure}
SCENES=${SCENES:-300}
REPORT_IMAGES=${REPORT_IMAGES:-192}
RUNS=${RUNS:-20}
CKPT=depthart/assets/default.safetensors
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
python scripts/diagnose_model.py "$CKPT" "$SCENES" --sampler expect --prior-cache "$OUT/prior.npy" \
  --json "$OUT/heldout_expect.json" | tee "$OUT/heldout_expect.txt"              # with every baseline
# greedy is not the shipped sampler: a map it cannot scale (0 on half a scene) is reported, not fatal
python scripts/diagnose_model.py "$CKPT" "$SCENES" --sampler greedy --quick --json "$OUT/heldout_greedy.json" \
  > "$OUT/heldout_greedy.txt" 2>&1 || echo "greedy: not scored (see $OUT/heldout_greedy.txt)"
tail -n 6 "$OUT/heldout_greedy.txt"
depthart eval -d middlebury -o "$OUT/middlebury_marigold" | tail -12
depthart eval -d middlebury --protocol depthart -o "$OUT/middlebury_depthart" | tail -12
depthart export -c "$CKPT" -o "$OUT/b32" --force
depthart calibrate "$OUT/b32" --precision fp16 -o "$OUT/f16" --report --report-images 64 --force | tail -3
depthart calibrate "$OUT/b32" --precision int8 --int8-format u8s8 -o "$OUT/u8" --report \
  --report-images "$REPORT_IMAGES" --force | tail -9
if [ -z "${SKIP_BENCH:-}" ]; then
  depthart bench -c "$CKPT" --bundle "$OUT/b32" --bundle "$OUT/u8" --runs "$RUNS" --threads 1 --json "$OUT/bench_t1.json"
fi
echo "measurements in $OUT"
