#!/usr/bin/env bash
# Batch-1 CPU latency of the sparse executor (issue 5): one trained FTWT checkpoint and random-weight stand-ins at the
# paper's operating points, each at 1 and 2 threads, merged into results/speedup.csv (+ results/speedup.png).
# Usage: HEBBNB_DATA=../shared/data [MODELS="resnet20 ..."] bash reproduce/speedup.sh   (run it on an otherwise idle machine: nothing else
# may compete for the cores, or spinning OpenMP threads make every number meaningless)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz and imagenet-sample.tar.gz}"
OUT="${OUT:-runs/bench}"
TABLE="${TABLE:-results/speedup.csv}"
unset OMP_WAIT_POLICY   # default (spinning) OpenMP waits: passive waits add a thread wake-up to every op at 2 threads
bench() { local name=$1; shift; hebbnb-bench --data "$DATA" --threads 1 2 --out "$OUT/$name" --table "$TABLE" "$@"; }
# trained: ResNet-20 FTWT decoupled r = 0.8, 3 epochs (CIFAR-10 test images), with the reference code's softmax heads
# (they learned a static mask) and without the softmax (13.5% of the filters input-dependent)
resnet20()           { bench resnet20_r0.8 --ckpt checkpoints/cifar10_resnet20_ftwt_r0.8_e3.pt --images 200; }
resnet20_nosoftmax() { bench resnet20_r0.8_nosoftmax --ckpt checkpoints/cifar10_resnet20_ftwt_r0.8_e3_nosoftmax.pt --name resnet20:no-softmax --images 200; }
# random weights, heads set to keep each filter for a share `keep` of inputs, close to the paper's reductions:
# ResNet-56 r 0.80 (66%), VGG16-BN r 0.92 (56%), ResNet-18 on ImageNet-sample images
resnet56()           { bench resnet56_random --arch resnet56 --r 0.8 --keep 0.58 --images 200; }
vgg16_bn()           { bench vgg16_bn_random --arch vgg16_bn --r 0.92 --keep 0.66 --images 200; }
resnet18()           { bench resnet18_random --arch resnet18 --r 0.9 --keep 0.7 --images 50; }
for m in ${MODELS:-resnet20 resnet20_nosoftmax resnet56 vgg16_bn resnet18}; do "$m"; done
