#!/usr/bin/env bash
# Is FTWT dynamic? (issue 11) CIFAR-10 ResNet-20 from the committed baseline, with hebbnb's own commands.
# Usage: HEBBNB_DATA=../shared/data bash reproduce/dynamic_study.sh [stage ...]
# Stages: heads (experiment 1: heads only, frozen backbone, 60 epochs on a 10,000-image class-balanced subset,
#         evaluated per epoch on a 2,000-image test subset, {softmax, no softmax} x {mlr 0.1 (reference), 1.0}), long (experiment 2: decoupled r = 0.8, 30 epochs, full
#         training set, mask loss for the first half, {softmax, no softmax}), eval (finished runs on the full test
#         set), reference (the reference code's heads-only runs, reproduce/reference_ftwt.py), reference_long (the
#         reference code's full FTWT, as long: decoupled r = 0.8, 30 epochs, full training set, lr 0.01 cosine, mlr 0.1,
#         mask loss for the first half, {softmax, no softmax}), collect, save.
# Runs resume where they stopped. Runs longer than a session are continued from the stage checkpoints committed under
# checkpoints/dynamic_study/ (last.pt, log.csv), which `save` refreshes.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz}"
RUNS="${RUNS:-runs/dynamic_study}"
SAVED=checkpoints/dynamic_study
BASE=checkpoints/cifar10_resnet20_baseline.pt
export OMP_WAIT_POLICY=PASSIVE
COMMON=(--arch resnet20 --dataset cifar10 --data "$DATA" --no-download --no-progress --threads "${THREADS:-1}" --init "$BASE"
        --batch-size 128 --schedule cosine --r 0.8 --mode decoupled)
done_run() { [ -f "$1/metrics.json" ]; }
restore() {  # continue a run from its committed stage checkpoint
  if [ ! -f "$RUNS/$1/last.pt" ] && [ -f "$SAVED/$1/last.pt" ]; then mkdir -p "$RUNS/$1"; cp "$SAVED/$1/"* "$RUNS/$1/"; fi
}
run() {  # run NAME ARGS...
  local name=$1; shift
  restore "$name"
  done_run "$RUNS/$name" || hebbnb-train "${COMMON[@]}" "$@" --out "$RUNS/$name" --resume
}
heads_run() {  # heads_run SOFTMAX(softmax|nosoftmax) MLR
  local flag=(); [ "$1" = nosoftmax ] && flag=(--no-softmax)
  run "heads_$1_mlr$2" --train heads --cooldown 1 --epochs 60 --subset 10000 --test-subset 2000 --mlr "$2" "${flag[@]}"
}
stage_heads() {  # two runs side by side, one thread each
  (heads_run softmax 0.1; heads_run softmax 1.0) & (heads_run nosoftmax 0.1; heads_run nosoftmax 1.0) & wait
}
stage_long() {
  (run long_softmax --epochs 30 --lr 0.01 --mlr 0.1 --cooldown 0.5) & (run long_nosoftmax --epochs 30 --lr 0.01 --mlr 0.1 --cooldown 0.5 --no-softmax) & wait
}
stage_save() {  # copy every run's resumable state into the repository
  for d in "$RUNS"/*/ runs/reference/*/; do
    [ -f "$d/last.pt" ] || continue
    local name; name=$(basename "$d"); [[ "$d" == runs/reference/* ]] && name="reference/$name"; mkdir -p "$SAVED/$name"
    cp "$d/last.pt" "$d/log.csv" "$SAVED/$name/"
    for f in metrics.json eval.json; do [ -f "$d/$f" ] && cp "$d/$f" "$SAVED/$name/"; done
  done
}
stage_eval() {  # finished heads-only runs (evaluated per epoch on 2,000 test images) on the full test set
  for d in "$RUNS"/heads_*/; do
    if [ -f "$d/metrics.json" ] && [ ! -f "$d/eval.json" ]; then
      hebbnb-eval --ckpt "$d/last.pt" --data "$DATA" --no-download > "$d/eval.json.part" && mv "$d/eval.json.part" "$d/eval.json"
    fi
  done
}
REF="${REFERENCE:-/tmp/ref/FTWT}"   # a checkout of github selkerdawy/FTWT outside this repository
ref_restore() {  # ref_restore NAME: continue runs/reference/NAME from its committed stage checkpoint
  if [ ! -f "runs/reference/$1/last.pt" ] && [ -f "$SAVED/reference/$1/last.pt" ]; then
    mkdir -p "runs/reference/$1"; cp "$SAVED/reference/$1/"* "runs/reference/$1/"
  fi
}
ref_heads() {  # ref_heads SOFTMAX(softmax|nosoftmax): the reference code's heads, as heads_run SOFTMAX 0.1
  local out="runs/reference/heads_$1_mlr0.1" flag=(--softmax); [ "$1" = nosoftmax ] && flag=(--no-softmax)
  ref_restore "heads_$1_mlr0.1"
  [ -f "$out/metrics.json" ] || python reproduce/reference_ftwt.py heads --reference "$REF" --mlr 0.1 "${flag[@]}" \
    --test-subset 2000 --threads "${THREADS:-1}" --out "$out" --resume
  [ -f "$out/eval.json" ] || python reproduce/reference_ftwt.py eval --reference "$REF" --run "$out"
}
stage_reference() { ref_heads softmax & ref_heads nosoftmax & wait; }
ref_long() {  # ref_long SOFTMAX(softmax|nosoftmax): the reference code's full FTWT, as stage_long's long_SOFTMAX
  local out="runs/reference/long_$1" flag=(--softmax); [ "$1" = nosoftmax ] && flag=(--no-softmax)
  ref_restore "long_$1"
  [ -f "$out/metrics.json" ] || python reproduce/reference_ftwt.py ftwt --reference "$REF" --data "$DATA" \
    --init "$BASE" --batch-size 128 --r 0.8 --mode decoupled --epochs 30 --lr 0.01 --mlr 0.1 --cooldown 0.5 "${flag[@]}" \
    --threads "${THREADS:-1}" --out "$out" --resume
}
stage_reference_long() { ref_long softmax & ref_long nosoftmax & wait; }  # two runs side by side, one thread each
stage_collect() { python reproduce/collect_dynamic.py --hebbnb "$RUNS"/*/ --reference runs/reference/*/; }

for s in ${@:-heads long eval reference reference_long collect}; do echo "== $s"; "stage_$s"; done
