"Evaluation under torchrun counts every image exactly once, for every dataset and any number of processes."

import json, os, subprocess, sys
from pathlib import Path
import pytest
from PIL import Image

BIN = Path(sys.executable).parent
SCRIPT = '''
import json, sys, torch, torch.distributed as dist
from torch import nn
from hebbnb.data import imagenet_loaders, CifarBatches
from hebbnb.train import Runtime, evaluate
torch.set_num_threads(1)
dist.init_process_group('gloo')
rt = Runtime(torch.device('cpu'), dist.get_rank(), dist.get_world_size())
class ClassZero(nn.Module):
    "Always answers class 0."
    def forward(self, x): return torch.eye(10)[torch.zeros(len(x), dtype=torch.long)]
_, val = imagenet_loaders(batch_size=2, workers=0, distributed=True, val_dir=sys.argv[1])
folder = evaluate(ClassZero(), val, rt, static=1)
y = torch.tensor([0, 0, 0, 1, 2])
x = torch.zeros(5, 3, 32, 32, dtype=torch.uint8)
batches = CifarBatches(x, y, 2, False, rank=rt.rank, world_size=rt.world_size)
tensors = evaluate(ClassZero(), batches, rt, static=1)
if rt.main: print(json.dumps(dict(folder=folder['top1'], tensors=tensors['top1'])))
'''


@pytest.mark.parametrize('nproc', [2, 3])
def test_distributed_evaluation_counts_each_image_once(tmp_path, nproc):
    "5 images, 3 of class 0, on processes that do not divide 5: a model that always answers 0 scores 60.00%."
    for cls, n in (('a', 3), ('b', 1), ('c', 1)):
        (tmp_path / 'val' / cls).mkdir(parents=True)
        for i in range(n):
            Image.new('RGB', (32, 32), (40 * i, 80, 120)).save(tmp_path / 'val' / cls / f'{i}.png')
    (tmp_path / 'eval.py').write_text(SCRIPT)
    r = subprocess.run(
        [
            str(BIN / 'torchrun'),
            '--standalone',
            '--nproc_per_node',
            str(nproc),
            str(tmp_path / 'eval.py'),
            str(tmp_path / 'val'),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, 'OMP_NUM_THREADS': '1'},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res == dict(folder=pytest.approx(60.0), tensors=pytest.approx(60.0))
