"""The built documentation site in a real browser: pages load cleanly, figures show, every tutorial is reachable,
search works.

Needs `_site/` (`python tools/build_docs.py`) and Debian's Chromium; `.ci/run` builds the site and runs this.
"""

import json, re, sys
from pathlib import Path
import pytest
from browser import chromium, serve, watch

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / '_site'
sys.path.insert(0, str(ROOT / 'tools'))
from build_docs import notebooks, page_name  # noqa: E402  (the page names the build gives)

PAGES = {
    'index.html': 1,
    'heatmap_mass.html': 0,
    'api/mass.html': 0,
    'reproduction_cifar10.html': 3,
}  # page: images it must at least show


@pytest.fixture(scope='module')
def site():
    if not (SITE / 'index.html').exists():
        pytest.fail('no _site/: run `python tools/build_docs.py` first')
    with serve(SITE) as url, chromium() as browser:
        yield url, browser


def title(nb: Path) -> str:
    return json.loads(nb.read_text())['cells'][0]['source'][0].lstrip('# ').strip()


def open_page(site, path: str):
    "A new page of the served site at `path`, and the list its console errors and failed requests are collected in."
    url, browser = site
    page = browser.new_page()
    problems = watch(page)
    page.goto(url + path, wait_until='networkidle')
    return page, problems


@pytest.mark.parametrize('path,min_images', PAGES.items())
def test_page_loads_cleanly(site, path, min_images):
    page, problems = open_page(site, path)
    page.wait_for_function('document.readyState === "complete"')
    imgs = page.eval_on_selector_all(
        'article img', 'els => els.map(e => [e.getAttribute("src"), e.complete, e.naturalWidth])'
    )
    broken = [src for src, done, w in imgs if not (done and w > 0)]
    assert not broken, f'{path}: images that did not load: {broken}'
    assert len(imgs) >= min_images, f'{path}: {len(imgs)} images, expected at least {min_images}'
    assert page.locator('article h1').count() == 1
    if '$' in page.locator('article').inner_text():
        assert page.locator('mjx-container').count() > 0, 'math left unrendered'
    assert not problems, f'{path}: ' + '\n'.join(problems)
    page.close()


def test_navigation_reaches_every_tutorial(site):
    page, problems = open_page(site, 'index.html')
    tutorials = [nb for nb in notebooks() if nb.name != 'index.ipynb']
    for nb in tutorials:
        link = page.locator('nav.bd-docs-nav a', has_text=re.compile(rf"^\s*{re.match(r'[0-9]+[a-z]*', nb.name)[0]} "))
        assert link.count() == 1, f'no sidebar entry for {nb.name}'
        link.click()
        page.wait_for_load_state('networkidle')
        assert page.url.split('#')[0].endswith(f'/{page_name(nb)}.html'), page.url
        assert page.locator('article h1').inner_text().strip().rstrip('#').strip() == title(nb)
    assert not problems, '\n'.join(problems)
    page.close()


def test_search_finds_mass_k(site):
    page, problems = open_page(site, 'index.html')
    page.locator('.bd-sidebar-primary input[name="q"], .bd-sidebar-primary .search-button-field').first.click()
    field = page.locator('input[name="q"]:visible').first
    field.fill('mass_k')
    field.press('Enter')
    page.wait_for_url(re.compile(r'search\.html\?q=mass_k'))
    results = page.locator('#search-results ul.search li a')
    results.first.wait_for(timeout=15_000)
    hrefs = results.evaluate_all('as => as.map(a => a.getAttribute("href"))')
    assert any('mass.html#hebbnb.mass.mass_k' in h for h in hrefs), hrefs
    assert not problems, '\n'.join(problems)
    page.close()
