"""Build the documentation site into `_site/` from the notebooks, without Quarto and without running them.

Usage: python tools/build_docs.py            # strict: a warning (broken link, anchor or reference) fails the build
       python tools/build_docs.py --serve    # build, then serve _site/ on http://127.0.0.1:8000
       python tools/build_docs.py --no-strict

Steps: (1) nbdev's notebook processors on a copy of every notebook in `nbs/` (hidden and exported cells dropped,
a `show_doc` card with the parameter comments after every exported definition, directives removed); cards are
rendered in this process from the installed `hebbnb`, so no notebook code runs (nbdev's own docs pass re-executes
every cell holding an import). (2) Links are rewritten for the site: notebooks to pages, images copied beside them,
other repository files to their page on GitHub, and backticked public names to their API entry. (3) Generated pages:
an API reference per module (autodoc, with the parameter comments) and the `--help` of every console script in
`[project.scripts]`. (4) Sphinx + myst-nb + sphinx-book-theme render it all with the stored outputs (`docs/conf.py`).
Every page `NAME.html` also gets a plain-markdown twin `NAME.html.md`, the URL the module docstrings give.
Who has Quarto can still use `nbdev-preview`.
"""

from __future__ import annotations
import argparse, contextlib, importlib, inspect, io, json, os, re, shutil, sys, time, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, STAGE, SITE = ROOT / 'nbs', ROOT / '_proc', ROOT / '_site'
PYPROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())
GIT_URL = PYPROJECT['project']['urls']['Repository'].rstrip('/')
IMAGES = ('.png', '.jpg', '.jpeg', '.gif', '.svg')


# ---------------------------------------------------------------- names and pages
def page_name(nb: Path) -> str:
    "Page of a notebook, as nbdev names it (numeric prefix dropped): `02_heatmap_mass.ipynb` -> `heatmap_mass`."
    return re.sub(r'^\d+[a-zA-Z0-9]*_', '', nb.stem.lower())


def notebooks() -> list[Path]:
    "Notebooks of the site in order: index, tutorials (below 90), reproductions (90 and up); `_` scratch skipped."
    return sorted(p for p in NBS.glob('*.ipynb') if not p.name.startswith(('_', '.')))


def is_reproduction(nb: Path) -> bool:
    return bool(re.match(r'9\d', nb.name))


def modules() -> list[str]:
    "Modules of the package, from nbdev's index (`hebbnb/_modidx.py`)."
    from hebbnb._modidx import d

    return sorted(d['syms'])


def public_names() -> dict[str, str]:
    "{name: 'hebbnb.mod.name'} for every function and class in a module's `__all__` (what the API pages document)."
    out = {}
    for mod in modules():
        m = importlib.import_module(mod)
        for nm in getattr(m, '__all__', []):
            if callable(getattr(m, nm)):
                out.setdefault(nm, f'{mod}.{nm}')  # constants have no API entry of their own
    return out


# ---------------------------------------------------------------- notebook processing
def _md_cell(src: str):
    from fastcore.nbio import mk_cell

    return mk_cell(src, 'markdown')


def card(obj, name: str) -> str:
    "nbdev's `show_doc` card of `obj` as markdown: heading, signature with parameter comments, docstring, source link."
    from nbdev.showdoc import show_doc

    md = show_doc(obj, name=name)._repr_markdown_()
    md = re.sub(r'^---\s*\n', '', md.lstrip())  # nbdev's rule above the card
    md = re.sub(
        r'^\[source\]\([^)]*\)\{[^}]*\}\s*\n', '', md.lstrip()
    )  # Quarto-only link syntax, with a broken line number
    try:
        f, line = inspect.getsourcefile(inspect.unwrap(obj)), inspect.getsourcelines(inspect.unwrap(obj))[1]
        rel = Path(f).resolve().relative_to(ROOT).as_posix()
        src = f'<a class="card-source" href="{GIT_URL}/blob/main/{rel}#L{line}">source</a>\n\n'
    except (TypeError, OSError, ValueError):
        src = ''
    return f'{src}{md.strip()}\n'  # the link floats at the right of the heading that follows it


def link_target(target: str, nb: Path, pages: dict[str, str], stage: Path) -> str:
    "Where a relative link of notebook `nb` points on the site (the notebook index.ipynb is the README: repo-relative)."
    if re.match(r'^([a-z]+:|#|/)', target):
        return target
    path, _, anchor = target.partition('#')
    base = ROOT if nb.name == 'index.ipynb' else nb.parent
    src = (base / path).resolve()
    if src.suffix == '.ipynb' and src.parent == NBS and src.name in pages:
        return pages[src.name] + '.ipynb' + (f'#{anchor}' if anchor else '')
    if not src.exists() or ROOT not in src.parents:
        return target  # left for Sphinx to report
    rel = src.relative_to(ROOT).as_posix()
    if src.suffix.lower() in IMAGES:
        (stage / '_repo' / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, stage / '_repo' / rel)
        return f'_repo/{rel}'
    return f"{GIT_URL}/{'tree' if src.is_dir() else 'blob'}/main/{rel}" + (f'#{anchor}' if anchor else '')


_FENCE = re.compile(r'^\s*(```|~~~)')
_LINK = re.compile(r'(!?\[[^\]]*\])\(([^)\s]+)\)')
_CODE = re.compile(r'(?<![`\w])`([A-Za-z][A-Za-z0-9_]*)`(?!`)')


def rewrite_markdown(src: str, nb: Path, pages: dict, stage: Path, names: dict, here: str = '') -> str:
    "Site links for a markdown cell; backticked public names link to their API entry (not in code or headings)."
    out, fenced = [], False
    for line in src.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        if not fenced:
            line = _LINK.sub(lambda m: f'{m[1]}({link_target(m[2], nb, pages, stage)})', line)
            if not line.lstrip().startswith('#'):
                line = _CODE.sub(
                    lambda m: f'{{py:obj}}`{m[1]} <{names[m[1]]}>`' if m[1] in names and names[m[1]] != here else m[0],
                    line,
                )
        out.append(line)
    return '\n'.join(out)


def process(nb: Path, pages: dict, stage: Path, names: dict) -> dict:
    "A copy of notebook `nb` ready for myst-nb: nbdev's processors, cards, site links, nothing executed."
    from fastcore.nbio import read_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import (
        populate_language,
        add_show_docs,
        strip_ansi,
        hide_line,
        rm_header_dash,
        rm_export,
        clean_magics,
        hide_,
    )

    nbd = read_nb(nb)
    mod = next(
        (
            m[1]
            for c in nbd.cells
            if c.cell_type == 'code'
            for m in [re.search(r'^#\|\s*default_exp\s+(\S+)', ''.join(c.source), re.M)]
            if m
        ),
        None,
    )
    ns = vars(importlib.import_module(f'hebbnb.{mod}')) if mod else {}

    def cards(cell):  # show_doc(...) cells (added by nbdev or written) -> markdown cards
        m = re.fullmatch(r'show_doc\((\w+(?:\.\w+)*)\)', cell.source.strip()) if cell.cell_type == 'code' else None
        if not m:
            return
        obj = ns
        for part in m[1].split('.'):
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
        cell.update(cell_type='markdown', source=card(obj, m[1]), metadata={'card': True})
        cell.pop('outputs', None)
        cell.pop('execution_count', None)

    def directives_to_tags(cell):  # Quarto cell options that myst-nb knows as tags
        d, tags = getattr(cell, 'directives_', {}) or {}, []
        if str(d.get('echo', '')).strip().lower() == 'false':
            tags.append('remove-input')
        if str(d.get('output', '')).strip().lower() == 'false':
            tags.append('remove-output')
        if tags:
            cell.metadata['tags'] = tags

    def links(cell):
        if cell.cell_type == 'markdown':
            cell.source = rewrite_markdown(cell.source, nb, pages, stage, names)

    procs = [
        populate_language,
        add_show_docs,
        strip_ansi,
        hide_line,
        rm_header_dash,
        rm_export,
        hide_,
        clean_magics,
        cards,
        directives_to_tags,
        links,
    ]
    NBProcessor(nb=nbd, procs=procs, rm_directives=True).process()
    cells, i = nbd.cells, 0
    while i < len(cells):  # nbdev inserts the cards of one cell last-first: restore source order
        j = i
        while j < len(cells) and cells[j].metadata.get('card'):
            j += 1
        cells[i:j] = cells[i:j][::-1]
        i = max(j, i + 1)
    for c in nbd.cells:
        for k in ('directives_', 'idx_', 'has_sd'):
            c.pop(k, None)
        c.metadata.pop('language', None)
        c.metadata.pop('card', None)
    nbd.metadata.pop('widgets', None)
    return nbd


# ---------------------------------------------------------------- generated pages
def api_page(mod: str, tutorial: str | None) -> str:
    see = f'The notebook that builds it, with examples: [{tutorial}]({tutorial}).\n\n' if tutorial else ''
    return (
        f'# `{mod}`\n\n{see.replace("](", "](../")}'
        f'```{{eval-rst}}\n.. automodule:: {mod}\n   :members:\n   :undoc-members:\n'
        '   :show-inheritance:\n   :member-order: bysource\n```\n'
    )


def cli_page() -> str:
    "The `--help` of every console script declared in pyproject's [project.scripts], generated now."
    parts = [
        '# Command line\n',
        'Every console script declared in `pyproject.toml`, with its `--help` as generated at build time. '
        'The notebook [09_cli](cli.ipynb) explains them; the README gives a complete session.\n',
    ]
    os.environ['COLUMNS'] = '100'
    for prog, spec in PYPROJECT['project']['scripts'].items():
        modname, fn = spec.split(':')
        f, buf, argv0 = getattr(importlib.import_module(modname), fn), io.StringIO(), sys.argv[0]
        sys.argv[0] = prog
        try:
            with contextlib.redirect_stdout(buf):
                f(['--help'])
        except SystemExit as e:
            if e.code not in (0, None):
                raise RuntimeError(f'{prog} --help exited with {e.code}')
        finally:
            sys.argv[0] = argv0
        text = buf.getvalue().strip()
        if not text.startswith('usage:'):
            raise RuntimeError(f'{prog} --help printed no usage:\n{text[:300]}')
        parts.append(f'## `{prog}`\n\n`{spec}`\n\n```text\n{text}\n```\n')
    return '\n'.join(parts)


def toctree(caption: str, entries: list[tuple[str, str]]) -> str:
    lines = '\n'.join(f'{title} <{page}>' for title, page in entries)
    return f'```{{toctree}}\n:caption: {caption}\n:hidden:\n:maxdepth: 1\n\n{lines}\n```\n'


def markdown_twin(nbd) -> str:
    "The page as plain markdown (`NAME.html.md`): markdown cells, code, text outputs; figures noted."
    out = []
    for c in nbd.cells:
        if c.cell_type == 'markdown':
            out.append(c.source)
        elif c.cell_type == 'code' and 'remove-cell' not in c.metadata.get('tags', []):
            if 'remove-input' not in c.metadata.get('tags', []) and c.source.strip():
                out.append(f'```python\n{c.source}\n```')
            for o in c.get('outputs', []):
                data = o.get('data', {})
                text = (
                    o.get('text')
                    or data.get('text/markdown')
                    or ('' if 'image/png' in data else data.get('text/plain', ''))
                )
                text = ''.join(text) if isinstance(text, list) else text
                if 'image/png' in data:
                    out.append('*(figure: see the HTML page)*')
                elif 'text/markdown' in data:
                    out.append(text)
                elif text.strip():
                    out.append(f'```\n{text.rstrip()}\n```')
    return '\n\n'.join(out) + '\n'


# ---------------------------------------------------------------- the build
def stage(dst: Path = STAGE) -> list[tuple[str, dict]]:
    "Write the Sphinx source tree into `dst`; return (page, processed notebook) pairs."
    from fastcore.nbio import write_nb

    if dst.exists():
        shutil.rmtree(dst)
    (dst / 'api').mkdir(parents=True)
    nbs = notebooks()
    pages, names = {p.name: page_name(p) for p in nbs}, public_names()
    done = []
    for p in nbs:
        nbd = process(p, pages, dst, names)
        done.append((pages[p.name], nbd))
    tut = {}
    for p in nbs:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', p.read_text(), re.M)
        if m:
            tut[f'hebbnb.{m[1]}'] = pages[p.name]
    for mod in modules():
        (dst / 'api' / f"{mod.split('.', 1)[1]}.md").write_text(api_page(mod, tut.get(mod)))
    (dst / 'commands.md').write_text(cli_page())
    title = lambda p: (  # '11a Deployment runtime': the number and the notebook's first heading
        f"{re.match(r'[0-9]+[a-z]*', p.name)[0]} "
        f"{json.loads(p.read_text())['cells'][0]['source'][0].lstrip('# ').strip()}"
    )
    index = next(nbd for page, nbd in done if page == 'index')
    index.cells.append(
        _md_cell(
            '\n'.join(
                [
                    toctree(
                        'Tutorials',
                        [(title(p), pages[p.name]) for p in nbs if p.name != 'index.ipynb' and not is_reproduction(p)],
                    ),
                    toctree('Reproductions', [(title(p), pages[p.name]) for p in nbs if is_reproduction(p)]),
                    toctree(
                        'Reference',
                        [('Command line', 'commands')]
                        + [(f'API: {m}', f"api/{m.split('.', 1)[1]}") for m in modules()],
                    ),
                ]
            )
        )
    )
    for page, nbd in done:
        write_nb(nbd, dst / f'{page}.ipynb')
    return done


def build(strict: bool = True, out: Path = SITE) -> float:
    "Stage and render the site into `out`; return the seconds taken. SystemExit on a failed (or, strict, warned) build."
    from sphinx.cmd.build import build_main

    t0 = time.time()
    os.environ.setdefault('MPLBACKEND', 'Agg')
    done = stage()
    html = STAGE / '.build' / 'html'  # myst-nb writes beside the output folder: keep that inside _proc/
    args = [
        '-b',
        'html',
        '-q',
        '-c',
        str(ROOT / 'docs'),
        '-d',
        str(STAGE / '.build' / 'doctrees'),
        str(STAGE),
        str(html),
    ]
    if strict:
        args[:0] = ['-W', '--keep-going']
    if build_main(args):
        raise SystemExit('documentation build failed (see the warnings above)')
    if out.exists():
        shutil.rmtree(out)
    shutil.move(html, out)
    for page, nbd in done:
        (out / f'{page}.html.md').write_text(markdown_twin(nbd))
    (out / '.nojekyll').touch()  # GitHub Pages: serve _static/ and friends as they are
    return time.time() - t0


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description='Build the documentation site into _site/.')
    ap.add_argument(
        '--no-strict', dest='strict', action='store_false', help='let warnings pass (default: they fail the build)'
    )
    ap.add_argument('--serve', action='store_true', help='serve _site/ on 127.0.0.1 after building')
    ap.add_argument('--port', type=int, default=8000, help='port for --serve')
    a = ap.parse_args()
    dt = build(a.strict)
    print(f'built {SITE.relative_to(ROOT)}/ in {dt:.1f} s: open {SITE / "index.html"}')
    if a.serve:
        import functools, http.server

        h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
        print(f'serving on http://127.0.0.1:{a.port}/ (Ctrl-C stops)')
        http.server.ThreadingHTTPServer(('127.0.0.1', a.port), h).serve_forever()
