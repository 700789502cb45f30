#!/usr/bin/env bash
# Batch-1 CPU latency of the sparse executor (issue 5): one trained FTWT checkpoint and random-weight stand-ins at the
# paper's operating points, each at 1 and 2 threads, merged into results/speedup.csv (+ results/speedup.png).
# Usage: HEBBNB_DATA=../shared/data bash reproduce/speedup.sh        (run it on an otherwise idle machine)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz and imagenet-sample.tar.gz}"
OUT="${OUT:-runs/bench}"
TABLE="${TABLE:-results/speedup.csv}"
export OMP_WAIT_POLICY=PASSIVE
bench() { local name=$1; shift; hebbnb-bench --data "$DATA" --threads 1 2 --out "$OUT/$name" --table "$TABLE" "$@"; }
# trained: ResNet-20 FTWT decoupled r = 0.8, 3 epochs (CIFAR-10 test images), with the reference code's softmax heads
# (they learned a static mask) and without the softmax (13.5% of the filters input-dependent)
bench resnet20_r0.8 --ckpt checkpoints/cifar10_resnet20_ftwt_r0.8_e3.pt --images 200
bench resnet20_r0.8_nosoftmax --ckpt checkpoints/cifar10_resnet20_ftwt_r0.8_e3_nosoftmax.pt --name resnet20:no-softmax --images 200
# random weights, heads set to keep each filter for a share `keep` of inputs, close to the paper's reductions:
# ResNet-56 r 0.80 (66%), VGG16-BN r 0.92 (56%), ResNet-18 on ImageNet-sample images
bench resnet56_random --arch resnet56 --r 0.8 --keep 0.58 --images 200
bench vgg16_bn_random --arch vgg16_bn --r 0.92 --keep 0.66 --images 200
bench resnet18_random --arch resnet18 --r 0.9 --keep 0.7 --images 50
