#!/usr/bin/env bash
# FTWT on the full CIFAR-10 (JPEG copy) at CPU scale, with hebbnb's own commands (issue 6).
# Usage: HEBBNB_DATA=../shared/data bash reproduce/cifar10_resnet20.sh [stage ...]
# Stages: baseline estimate decoupled joint uniform long collect plot (default: all, in that order). Every stage resumes or
# skips runs that already finished, so the script can be rerun after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz}"
RUNS="${RUNS:-runs/repro_cifar10_resnet20}"
export OMP_WAIT_POLICY=PASSIVE
COMMON=(--data "$DATA" --no-download --no-progress --threads "${THREADS:-2}")
BASE="$RUNS/baseline/best.pt"
done_run() { [ -f "$1/metrics.json" ]; }

stage_baseline() {  # reuses the committed checkpoint (the same recipe's output) unless RETRAIN=1
  if [ -z "${RETRAIN:-}" ] && [ -f checkpoints/cifar10_resnet20_baseline.pt ] && ! done_run "$RUNS/baseline"; then
    mkdir -p "$RUNS/baseline"
    cp checkpoints/cifar10_resnet20_baseline.pt "$BASE"
    cp checkpoints/cifar10_resnet20_baseline.metrics.json "$RUNS/baseline/metrics.json"
  fi
  done_run "$RUNS/baseline" || hebbnb-baseline --config cifar10_resnet20 "${COMMON[@]}" --seed 0 --out "$RUNS/baseline" --resume
}
stage_estimate() {  # before training, from the baseline -> results/cifar10_resnet20_estimate_*.json and _budget.png
  for est in forward dense; do
    hebbnb-estimate --ckpt "$BASE" --data "$DATA" --no-download --estimator $est --r 0.75 0.8 0.85 0.9 0.95 1.0 --out "$RUNS/estimate_$est"
    cp "$RUNS/estimate_$est/estimate.json" "results/cifar10_resnet20_estimate_$est.json"
  done
  hebbnb-estimate --ckpt "$BASE" --data "$DATA" --no-download --target-reduction 50 --out "$RUNS/estimate_target50"
  cp "$RUNS/estimate_target50/estimate.json" results/cifar10_resnet20_estimate_target50.json
  cp "$RUNS/estimate_target50/estimate.png" results/cifar10_resnet20_budget.png
}
ftwt() {  # ftwt NAME ARGS...
  local out="$RUNS/$1"; shift
  done_run "$out" || hebbnb-train --config cifar10_resnet20 --init "$BASE" "${COMMON[@]}" "$@" --out "$out" --resume
}
E="${EPOCHS:-3}"     # the sweep's schedule; the recorded runs used 3 epochs, 1 thread each, two runs side by side
stage_decoupled() { for r in 0.8 0.85 0.9 0.95; do ftwt "ftwt_decoupled_r${r}_e$E" --epochs "$E" --r $r --mode decoupled; done; }
stage_joint()     { for r in 0.85 0.9; do ftwt "ftwt_joint_r${r}_e$E" --epochs "$E" --r $r --mode joint; done; }
stage_uniform() {   # uniform labels keeping the share of filters the decoupled r=0.8 run kept (0.639 -> 0.64)
  local keep; keep=$(python -c "import json; print(round(json.load(open('$RUNS/ftwt_decoupled_r0.8_e$E/metrics.json'))['keep_ratio'], 2))")
  ftwt "uniform_keep${keep}_e$E" --epochs "$E" --labels uniform --keep "$keep"
}
stage_long() { for r in ${LONG_R:-0.8 0.85}; do ftwt "ftwt_decoupled_r${r}_e10" --epochs 10 --r $r --mode decoupled; done; }
stage_collect() {  # runs from before hebbnb logged dynamic_filters get it from an evaluation of their last checkpoint
  for d in "$RUNS"/*/; do
    if [ -f "$d/last.pt" ] && ! grep -q '"dynamic_filters"' "$d/metrics.json" && [ ! -f "$d/eval.json" ]; then
      hebbnb-eval --ckpt "$d/last.pt" --data "$DATA" --no-download > "$d/eval.json.tmp" && mv "$d/eval.json.tmp" "$d/eval.json"
    fi
  done
  python reproduce/collect.py "$RUNS" results/cifar10_resnet20.csv
}
stage_plot() { python reproduce/collect.py --plot results/cifar10_resnet20.csv results/cifar10_resnet20_accuracy_vs_flops.png; }

for s in ${@:-baseline estimate decoupled joint uniform long collect plot}; do echo "== $s"; "stage_$s"; done
