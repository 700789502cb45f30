#!/usr/bin/env bash
# CIFAR-10 ResNet-56 at CPU scale (issue 11, experiment 4), with hebbnb's own commands.
# Usage: HEBBNB_DATA=../shared/data bash reproduce/cifar10_resnet56.sh [stage ...]
# Stages: baseline (30 epochs, cosine from lr 0.1: the paper trains 200 epochs with steps; 30 is what a 2-core CPU
#         allows over a few sessions), estimate (before training -> results/cifar10_resnet56_estimate_*.json),
#         ftwt (decoupled r = 0.8 and joint r = 0.88, the paper's rows, 10 epochs each from the baseline, mask loss for
#         the first half; ftwt_decoupled and ftwt_joint run one each, so that two can run side by side with THREADS=1),
#         collect
#         (-> results/cifar10_resnet56.csv), save (copy every run's resumable state into checkpoints/cifar10_resnet56/),
#         default: baseline estimate ftwt collect.
# Every stage resumes or skips finished runs; a stage longer than a session is continued from the state `save` committed.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz}"
RUNS="${RUNS:-runs/cifar10_resnet56}"
SAVED=checkpoints/cifar10_resnet56
BASE="$RUNS/baseline/last.pt"
export OMP_WAIT_POLICY=PASSIVE
COMMON=(--data "$DATA" --no-download --no-progress --threads "${THREADS:-2}" --schedule cosine)
done_run() { [ -f "$1/metrics.json" ]; }
restore() {  # continue a run from its committed stage checkpoint
  if [ ! -f "$RUNS/$1/last.pt" ] && [ -f "$SAVED/$1/last.pt" ]; then mkdir -p "$RUNS/$1"; cp "$SAVED/$1/"* "$RUNS/$1/"; fi
}
stage_baseline() {
  restore baseline
  done_run "$RUNS/baseline" || hebbnb-baseline --config cifar10_resnet56 "${COMMON[@]}" --epochs 30 --lr 0.1 --seed 0 \
    --out "$RUNS/baseline" --resume
}
stage_estimate() {
  for est in forward dense; do
    [ -f "$RUNS/estimate_$est/estimate.json" ] || hebbnb-estimate --ckpt "$BASE" --data "$DATA" --no-download \
      --estimator $est --r 0.8 0.85 0.88 0.9 --out "$RUNS/estimate_$est"
    cp "$RUNS/estimate_$est/estimate.json" "results/cifar10_resnet56_estimate_$est.json"
  done
}
ftwt() {  # ftwt NAME ARGS...
  local name=$1; shift
  restore baseline; restore "$name"   # the baseline is the runs' --init
  done_run "$RUNS/$name" || hebbnb-train --config cifar10_resnet56 --init "$BASE" "${COMMON[@]}" --epochs 10 --lr 0.01 \
    --mlr 0.1 --cooldown 0.5 "$@" --out "$RUNS/$name" --resume
}
stage_ftwt_decoupled() { ftwt ftwt_decoupled_r0.8_e10 --r 0.8 --mode decoupled; }
stage_ftwt_joint() { ftwt ftwt_joint_r0.88_e10 --r 0.88 --mode joint; }
stage_ftwt() { stage_ftwt_decoupled; stage_ftwt_joint; }
stage_collect() { python reproduce/collect.py "$RUNS" results/cifar10_resnet56.csv; }
stage_save() {
  for d in "$RUNS"/*/; do
    [ -f "$d/last.pt" ] || continue
    local name; name=$(basename "$d"); mkdir -p "$SAVED/$name"
    cp "$d/last.pt" "$d/log.csv" "$SAVED/$name/"; [ -f "$d/metrics.json" ] && cp "$d/metrics.json" "$SAVED/$name/"
  done
}
for s in ${@:-baseline estimate ftwt collect}; do echo "== $s"; "stage_$s"; done
