#!/usr/bin/env bash
# The static/dynamic split of the saved MACs for every committed FTWT checkpoint of an architecture (issue 11, item 5):
# resnet20: the two 3-epoch checkpoints and the 30-epoch runs of the dynamic study (reproduce/dynamic_study.sh long);
# resnet56: the two 10-epoch rows of reproduce/cifar10_resnet56.sh.
# Usage: HEBBNB_DATA=../shared/data bash reproduce/saving_split.sh [resnet20|resnet56]   (default resnet20)
#   -> results/cifar10_resnet20_saving_split.csv (one row per checkpoint) and ..._layers.csv (mean MACs per image and layer)
#   -> results/cifar10_resnet56_saving_split.csv and cifar10_resnet56_saving_split_layers.csv
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz}"
export OMP_WAIT_POLICY=PASSIVE
arch=${1:-resnet20}
case "$arch" in
  resnet20) CKPTS=(checkpoints/cifar10_resnet20_ftwt_r0.8_e3.pt checkpoints/cifar10_resnet20_ftwt_r0.8_e3_nosoftmax.pt
                   checkpoints/dynamic_study/long_softmax/last.pt checkpoints/dynamic_study/long_nosoftmax/last.pt) ;;
  resnet56) CKPTS=(checkpoints/cifar10_resnet56/ftwt_decoupled_r0.8_e10/last.pt
                   checkpoints/cifar10_resnet56/ftwt_joint_r0.88_e10/last.pt) ;;
  *) echo "saving_split.sh: architecture must be resnet20 or resnet56, got '$arch'" >&2; exit 2 ;;
esac
out=results/cifar10_${arch}_saving_split.csv
tmp=$(mktemp -d)
for i in "${!CKPTS[@]}"; do  # one JSON per checkpoint, numbered in the order of CKPTS
  hebbnb-eval --ckpt "${CKPTS[$i]}" --data "$HEBBNB_DATA" --no-download > "$tmp/$i.json"
done
python - "$tmp" "$out" "${CKPTS[@]}" <<'PY'
import csv, json, sys
from pathlib import Path
cols = ['checkpoint', 'top1', 'flops_reduction', 'static_saving', 'dynamic_saving', 'dynamic_share_of_saving', 'static_filters', 'dynamic_filters']
rows = []
ckpts = sys.argv[3:]
jsons = [Path(sys.argv[1]) / f'{i}.json' for i in range(len(ckpts))]
for ck, f in zip(ckpts, jsons):
    m = json.loads(f.read_text())
    rows.append(dict(checkpoint=ck, **{k: round(m[k], 2) for k in cols[1:] if k in m},
                     dynamic_share_of_saving=round(100 * m['dynamic_saving'] / (m['static_saving'] + m['dynamic_saving']), 2)))
with open(sys.argv[2], 'w', newline='') as fh:
    w = csv.DictWriter(fh, cols); w.writeheader(); w.writerows(rows)
with open(sys.argv[2].replace('.csv', '_layers.csv'), 'w', newline='') as fh:
    w = csv.writer(fh); w.writerow(['checkpoint', 'layer', 'dense_macs', 'static_macs', 'gated_macs'])
    for ck, f in zip(ckpts, jsons):
        pl = json.loads(f.read_text())['per_layer_macs']
        for name, d, s, g in zip(pl['layer'], pl['dense'], pl['static'], pl['gated']):
            w.writerow([ck, name, round(d), round(s), round(g)])
PY
cat "$out"
