#!/usr/bin/env bash
# The static/dynamic split of the saved MACs for the committed FTWT checkpoints (issue 11, item 5).
# Usage: HEBBNB_DATA=../shared/data bash reproduce/saving_split.sh
#   -> results/cifar10_resnet20_saving_split.csv (one row per checkpoint) and ..._layers.csv (mean MACs per image and layer)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${HEBBNB_DATA:?set HEBBNB_DATA to the folder holding cifar10-jpeg.tar.gz}"
export OMP_WAIT_POLICY=PASSIVE
out=results/cifar10_resnet20_saving_split.csv
tmp=$(mktemp -d)
for ck in checkpoints/cifar10_resnet20_ftwt_r0.8_e3 checkpoints/cifar10_resnet20_ftwt_r0.8_e3_nosoftmax; do
  hebbnb-eval --ckpt "$ck.pt" --data "$HEBBNB_DATA" --no-download > "$tmp/$(basename "$ck").json"
done
python - "$tmp" "$out" <<'PY'
import csv, json, sys
from pathlib import Path
cols = ['checkpoint', 'top1', 'flops_reduction', 'static_saving', 'dynamic_saving', 'dynamic_share_of_saving', 'static_filters', 'dynamic_filters']
rows = []
for f in sorted(Path(sys.argv[1]).glob('*.json')):
    m = json.loads(f.read_text())
    rows.append(dict(checkpoint=f'checkpoints/{f.stem}.pt', **{k: round(m[k], 2) for k in cols[1:] if k in m},
                     dynamic_share_of_saving=round(100 * m['dynamic_saving'] / (m['static_saving'] + m['dynamic_saving']), 2)))
with open(sys.argv[2], 'w', newline='') as fh:
    w = csv.DictWriter(fh, cols); w.writeheader(); w.writerows(rows)
with open(sys.argv[2].replace('.csv', '_layers.csv'), 'w', newline='') as fh:
    w = csv.writer(fh); w.writerow(['checkpoint', 'layer', 'dense_macs', 'static_macs', 'gated_macs'])
    for f in sorted(Path(sys.argv[1]).glob('*.json')):
        pl = json.loads(f.read_text())['per_layer_macs']
        for name, d, s, g in zip(pl['layer'], pl['dense'], pl['static'], pl['gated']): w.writerow([f'checkpoints/{f.stem}.pt', name, round(d), round(s), round(g)])
PY
cat "$out"
