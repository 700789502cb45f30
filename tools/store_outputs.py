"""Run the tutorial notebooks in place and store small, deterministic outputs, so a page teaches before it runs.

Usage: HEBBNB_DATA=../shared/data python tools/store_outputs.py              # every notebook 01-89 and 90+
       HEBBNB_DATA=../shared/data python tools/store_outputs.py nbs/01_topk_labels.ipynb
       python tools/store_outputs.py --allow-no-data ...                     # a trial without the real data

Each notebook runs top to bottom in a fresh `python3` kernel from `nbs/` (as `nbdev-test` and JupyterLab do), with
progress bars off (`TQDM_DISABLE=1`). `#| slow` cells are not run, and keep whatever outputs they had, except in
the notebooks of `RUN_SLOW`, whose slow cells are the page's point; a slow cell that saves a figure into the
repository (`savefig`) never runs here (it rewrites a committed result). The stored outputs are then cleaned:
stderr streams dropped (warnings and progress bars are for a live session), carriage-return residue collapsed,
machine paths replaced (`$HEBBNB_DATA`, `<tmp>`, `~`, the repository as `.`), widget views dropped, and the
notebook written through `nbdev-clean`'s cleaner. A cell that raises aborts its notebook, which is then left as it
was. The sizes printed at the end should stay near 2 MB for all notebooks together; `tests/test_stored_outputs.py`
checks what this writes.
"""

from __future__ import annotations
import argparse, os, re, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_SLOW = {'90_reproduction_cifar10.ipynb': "its per-layer figures of the committed checkpoint (about a minute)"}
BUDGET = 2_000_000  # bytes of stored outputs, all notebooks together
_SLOW = re.compile(r'^#\|\s*slow\b', re.M)
_PROGRESS = re.compile(r'\d+%\|')


def default_notebooks() -> list[Path]:
    "Tutorials (01-89) and reproductions (90+); index and `_` scratch notebooks are not run."
    return sorted(p for p in (ROOT / 'nbs').glob('[0-9][0-9]*.ipynb'))


def skip_cell(cell, nb_name: str) -> bool:
    "Slow cells are skipped (their stored outputs kept) outside RUN_SLOW; cells that save figures into the repo always."
    if cell.cell_type != 'code' or not _SLOW.search(cell.source):
        return False
    return nb_name not in RUN_SLOW or 'savefig(' in cell.source


def _replacements() -> list[tuple[re.Pattern, str]]:
    "Machine-specific paths and the placeholders stored instead, most specific first."
    subs = []
    data = os.environ.get('HEBBNB_DATA')
    if data:
        subs.append((re.escape(str(Path(data).resolve())), '$HEBBNB_DATA'))
        subs.append((re.escape(data.rstrip('/')), '$HEBBNB_DATA'))
    subs += [
        (re.escape(str(ROOT)) + r'/?', './'),
        (re.escape(tempfile.gettempdir()) + r'/[\w.-]+', '<tmp>'),
        (re.escape(str(Path.home())) + r'(?=/|\b)', '~'),
        (r'(?m)^(epoch \d+/\d+ .*?)\s+\d+s$', r'\1'),
    ]  # the seconds at the end of a training log line: a timing
    return [(re.compile(p), r) for p, r in subs]


def _text(v) -> str:
    return ''.join(v) if isinstance(v, list) else v


def _collapse_cr(s: str) -> str:
    "What a terminal shows of text rewritten with carriage returns: each line's last segment."
    return '\n'.join(line.rsplit('\r', 1)[-1] for line in s.split('\n'))


def clean_outputs(cell, subs) -> list[str]:
    "Clean one executed cell in place; return the stderr texts dropped (for the log)."
    dropped, outs = [], []
    for o in cell.get('outputs', []):
        if o.output_type == 'stream':
            if o.name == 'stderr':
                dropped.append(_text(o.text))
                continue
            o.text = _collapse_cr(_text(o.text))
            if outs and outs[-1].output_type == 'stream' and outs[-1].name == o.name:
                outs[-1].text += o.text
                continue
        if o.output_type in ('display_data', 'execute_result'):
            o.data.pop('application/vnd.jupyter.widget-view+json', None)
            if not o.data:
                continue
            if set(o.data) == {'text/plain'} and _PROGRESS.search(_text(o.data['text/plain'])):
                continue  # a progress bar's text form
        outs.append(o)
    for o in outs:
        if o.output_type == 'stream':
            o.text = _sub(o.text, subs)
        elif o.output_type in ('display_data', 'execute_result'):
            for k in [k for k in o.data if k.startswith('text/')]:
                o.data[k] = _sub(_text(o.data[k]), subs)
    cell.outputs = outs
    return dropped


def _sub(s: str, subs) -> str:
    for p, r in subs:
        s = p.sub(r, s)
    return s


def output_bytes(nb) -> int:
    import json

    return sum(len(json.dumps(c.get('outputs', []))) for c in nb.cells)


def run(path: Path, timeout: int = 900) -> int:
    "Execute notebook `path` in place with cleaned outputs; return the bytes of its stored outputs."
    import nbformat
    from nbclient import NotebookClient
    from nbdev.clean import clean_nb
    from fastcore.nbio import read_nb, write_nb

    nb = nbformat.read(path, as_version=4)
    subs = _replacements()
    nb.cells.insert(
        0, nbformat.v4.new_code_cell('%matplotlib inline')
    )  # Figure objects render as PNG; removed before saving

    class Client(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if skip_cell(cell, path.name):
                return cell
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    Client(
        nb,
        timeout=timeout,
        kernel_name='python3',
        record_timing=False,
        allow_errors=False,
        resources={'metadata': {'path': str(path.parent)}},
    ).execute()
    nb.cells.pop(0)
    for i, c in enumerate(nb.cells):
        if c.cell_type != 'code' or skip_cell(c, path.name):
            continue
        for t in clean_outputs(c, subs):
            print(f'  {path.name} cell {i}: stderr not stored: {t.strip()[:160]!r}', file=sys.stderr)
    nbformat.write(nb, path)
    nbd = read_nb(path)  # nbdev-clean's cleaner and writer: the same bytes `nbdev-clean` would leave
    clean_nb(nbd)
    write_nb(nbd, path)
    return output_bytes(nbd)


def main(argv=None):
    ap = argparse.ArgumentParser(description='Run notebooks in place and store small, deterministic outputs.')
    ap.add_argument('notebooks', nargs='*', type=Path, help='notebooks to run (default: nbs/01-89 and 90+)')
    ap.add_argument(
        '--allow-no-data',
        action='store_true',
        help='run without HEBBNB_DATA (real-data cells then show their fallback)',
    )
    ap.add_argument('--timeout', type=int, default=900, help='seconds allowed per cell')
    a = ap.parse_args(argv)
    data = os.environ.get('HEBBNB_DATA')
    if not a.allow_no_data and not (data and Path(data).is_dir()):
        sys.exit(
            'store_outputs: set HEBBNB_DATA to the data folder (e.g. ../shared/data): stored outputs use the real data'
        )
    os.environ.update(TQDM_DISABLE='1', OMP_WAIT_POLICY='PASSIVE', PYTHONHASHSEED='0')
    os.environ.pop('MPLBACKEND', None)  # the kernel's inline backend stores figures as PNG
    total = 0
    for p in a.notebooks or default_notebooks():
        t0 = time.time()
        n = run(p.resolve(), a.timeout)
        total += n
        print(f'{p.name}: {n / 1e3:.0f} kB of outputs ({time.time() - t0:.0f} s)')
    print(
        f'total: {total / 1e6:.2f} MB of stored outputs'
        + (' (over the ~2 MB budget: shrink figures)' if total > BUDGET else '')
    )


if __name__ == '__main__':
    main()
