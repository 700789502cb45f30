"""Generate README.md from nbs/index.ipynb (Quarto, which `nbdev-readme` needs, is not available everywhere).

Usage: python tools/readme.py          # write README.md
       python tools/readme.py --check  # exit 1 when README.md is stale
"""

import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = "<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"


def _directives(src: str) -> set:
    return {m.group(1) for m in re.finditer(r'^#\|\s*(\S+)', src, re.M)}


def render(nb_path: Path = ROOT / 'nbs' / 'index.ipynb') -> str:
    "README text: markdown cells as they are, visible code cells as python blocks (no outputs)."
    parts = []
    for cell in json.loads(nb_path.read_text())['cells']:
        src = ''.join(cell['source']).strip()
        if not src:
            continue
        if cell['cell_type'] == 'markdown':
            parts.append(src)
        elif cell['cell_type'] == 'code' and not _directives(src) & {'hide', 'export', 'exporti', 'default_exp'}:
            code = '\n'.join(line for line in src.splitlines() if not line.startswith('#|'))
            parts.append(f"```python\n{code}\n```")
    return HEADER + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    readme = ROOT / 'README.md'
    if '--check' in sys.argv:
        current = readme.read_text() if readme.exists() else ''
        if current != render():
            sys.exit("README.md is stale: run `python tools/readme.py`")
    else:
        readme.write_text(render())
