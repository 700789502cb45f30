"""Sphinx settings of the documentation site. Build it with `python tools/build_docs.py` (see that file)."""
import importlib.util, re, shutil, tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
GIT_URL = _project['urls']['Repository'].rstrip('/')

project, author = 'hebbnb', 'hebbnb developers'
html_title = 'hebbnb'
extensions = ['myst_nb', 'sphinx.ext.autodoc', 'sphinx.ext.mathjax']
exclude_patterns = ['.build', '_repo', '**.ipynb_checkpoints']
suppress_warnings = ['myst.header']          # show_doc cards are H3 wherever they fall, as in nbdev's own pages
default_role = 'literal'                     # `x` in docstrings is code, as in the notebooks

# myst-nb: show the outputs stored in the notebooks; never run them
nb_execution_mode = 'off'
nb_render_markdown_format = 'myst'           # tables printed as Markdown by the notebooks
nb_output_stderr = 'show'
myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_heading_anchors = 3                     # `page.ipynb#a-heading` links are checked

# autodoc: the API pages; the parameter comments (docments) become the parameter list
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False           # torch's docstrings (reST with its own labels) stay in torch's docs

# theme: sphinx-book-theme bundles its fonts and scripts; nothing is fetched at build time or from the pages
html_theme = 'sphinx_book_theme'
html_static_path = ['_static']
html_css_files = ['hebbnb.css']
html_theme_options = {
    'repository_url': GIT_URL, 'repository_branch': 'main', 'use_repository_button': True,
    'use_download_button': False, 'use_fullscreen_button': False, 'home_page_in_toc': True, 'show_toc_level': 2,
    'navbar_persistent': [],                 # one search field (the sidebar's), not a second one in an empty top bar
}
html_context = {'default_mode': 'light'}     # an explicit mode: the theme logs a console error without one
html_favicon = '_static/favicon.svg'         # else browsers ask for /favicon.ico and log a 404
html_show_sourcelink = False
html_copy_source = False                     # the processed notebooks are not worth a download
html_last_updated_fmt = None
mathjax_path = 'mathjax/tex-chtml.js'        # MathJax 3 served from the site itself (copied below), not from a CDN

def _escape_rst(s: str) -> str: return re.sub(r'([\\`*|_])', r'\\\1', s)

def _md_code(line: str) -> str:
    "Markdown code spans of nbdev docstrings (`x`, `DataLoader`s) as reST literals, whatever touches them."
    return re.sub(r'(?<!`)`([^`]+)`(?!`)', lambda m: f'\\ ``{m[1]}``\\ ', line)

def _docments(app, what, name, obj, options, lines):
    "Docstrings are Markdown-ish one-liners: read their code spans; append the parameter comments as a parameter list."
    lines[:] = [_md_code(l) for l in lines]
    if what == 'module':                     # nbdev's `Docs: URL.html.md` line -> the tutorial page on this site
        for i, l in enumerate(lines):
            m = re.match(r'Docs: \S+/([\w.-]+)\.html\.md$', l.strip())
            if m: lines[i] = f'Tutorial: :doc:`/{m[1]}`'
        return
    if what not in ('function', 'class', 'method'): return
    from fastcore.docments import docments
    try: d = docments(obj, full=True, returns=True)
    except Exception: return
    rows = [(k, v['docment']) for k, v in d.items() if v.get('docment') and k not in ('self', 'return')]
    ret = d.get('return', {}).get('docment')
    if not rows and not ret: return
    lines.append('')
    lines += [f':param {k}: {_escape_rst(doc)}' for k, doc in rows]
    if ret: lines.append(f':returns: {_escape_rst(ret)}')

def _check_own_refs(app, env, node, contnode):
    "Fail (under -W) on a reference to a hebbnb object that no API page documents; others (torch, typing) pass."
    target = node.get('reftarget', '')
    if node.get('refdomain') == 'py' and target.startswith('hebbnb.') and node.get('reftype') == 'obj':
        from sphinx.util import logging
        logging.getLogger(__name__).warning(f'unresolved reference to {target}', location=node)

def _copy_mathjax(app, exc):
    "MathJax 3 (the tex-chtml bundle, its fonts and lazily loaded parts) from the sphinx-mathjax-offline wheel."
    if exc is not None or app.builder.format != 'html': return
    src = Path(importlib.util.find_spec('sphinx-mathjax-offline').origin).parent / 'static' / 'mathjax'
    dst = Path(app.outdir) / '_static' / 'mathjax'
    shutil.copy2(src / 'tex-chtml.js', dst.parent / 'mathjax' / 'tex-chtml.js') if dst.exists() else (dst.mkdir(parents=True), shutil.copy2(src / 'tex-chtml.js', dst / 'tex-chtml.js'))
    for sub in ('output/chtml/fonts/woff-v2', 'input/tex/extensions', 'a11y', 'ui', 'adaptors'):
        shutil.copytree(src / sub, dst / sub, dirs_exist_ok=True)

def setup(app):
    app.connect('autodoc-process-docstring', _docments)
    app.connect('missing-reference', _check_own_refs)
    app.connect('build-finished', _copy_mathjax)
