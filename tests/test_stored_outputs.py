"""The notebooks as stored: a tutorial that draws a figure stores it as PNG, and nothing stored is machine noise.

Outputs are written by `tools/store_outputs.py` (run with HEBBNB_DATA set); this fails when a notebook in FIGURES
stores no PNG, a figure is stored only as text, or an output holds a timing, a progress bar, a machine path, an
error or stderr.
"""

import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / 'nbs').glob('[0-9][0-9]*.ipynb'))
# tutorials that draw: each must store at least one PNG (03, 04 and 08 draw nothing yet)
FIGURES = [
    '01_topk_labels',
    '02_heatmap_mass',
    '05_models',
    '06_flops',
    '07_data',
    '09_cli',
    '10a_bench',
    '90_reproduction_cifar10',
    '91_is_ftwt_dynamic',
]
BUDGET = 2_500_000  # bytes of stored outputs, all notebooks together (tools/store_outputs.py aims at about 2 MB)

TIMING = re.compile(
    r'\b\d+(\.\d+)?\s?(s|sec|secs|seconds|ms|min)\b(?!\w)|Wall time|CPU times|\d+(\.\d+)?\s?(it/s|s/it)|elapsed', re.I
)
PROGRESS = re.compile(r'\r|\d+%\|')
PATHS = re.compile(r'(/work/|/home/|/root/|/Users/|/tmp/|/var/folders/|[A-Z]:\\\\Users)')


def outputs(nb: Path):
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        for o in c.get('outputs', []):
            yield i, o


def texts(o) -> list[str]:
    if o['output_type'] == 'stream':
        return [''.join(o['text'])]
    return [''.join(v) if isinstance(v, list) else v for k, v in o.get('data', {}).items() if k.startswith('text/')]


def test_figures_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert set(FIGURES) <= names, f'FIGURES names notebooks that are gone: {set(FIGURES) - names}'


@pytest.mark.parametrize('name', FIGURES)
def test_stores_its_figures(name):
    pngs = sum('image/png' in o.get('data', {}) for _, o in outputs(ROOT / 'nbs' / f'{name}.ipynb'))
    assert pngs > 0, f'{name} draws figures but stores none: run tools/store_outputs.py (with HEBBNB_DATA)'


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_no_residue(nb):
    bad = []
    for i, o in outputs(nb):
        if o['output_type'] == 'error':
            bad.append(f'cell {i}: stored error {o.get("ename")}')
        if o['output_type'] == 'stream' and o['name'] == 'stderr':
            bad.append(f'cell {i}: stderr stored')
        if (
            o.get('data', {}).get('text/plain', '')
            and 'image/png' not in o['data']
            and re.match(r'<Figure size', ''.join(o['data']['text/plain']))
        ):
            bad.append(f'cell {i}: a figure stored as text')
        for t in texts(o):
            for what, rx in (('timing', TIMING), ('progress bar', PROGRESS), ('machine path', PATHS)):
                if m := rx.search(t):
                    bad.append(f'cell {i}: {what} {t[max(0, m.start() - 30) : m.end() + 30]!r}')
    assert not bad, f'{nb.name}:\n' + '\n'.join(bad)


def test_stored_outputs_stay_small():
    total = sum(len(json.dumps(o)) for nb in NOTEBOOKS for _, o in outputs(nb))
    assert total < BUDGET, f'{total / 1e6:.2f} MB of stored outputs (budget {BUDGET / 1e6:.1f} MB)'
