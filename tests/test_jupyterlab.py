"""The tutorials as a reader runs them: JupyterLab in headless Chromium, Run All Cells from the menu,
no error, no stderr.

JupyterLab runs on 127.0.0.1 without a token, with temporary settings, on copies of the notebooks (the run saves
them), with this interpreter's `python3` kernel: the project's environment. `HEBBNB_DATA` passes through, so the
real-data cells run when it is set.
"""

from __future__ import annotations
import json, os, shutil, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from browser import chromium, free_port, watch

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {
    '01_topk_labels.ipynb': 1,
    '02_heatmap_mass.ipynb': 2,
    '04_gating.ipynb': 0,
}  # notebook: figures it must show


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    pytest.importorskip('jupyterlab')
    tmp = tmp_path_factory.mktemp('lab')
    (tmp / 'nbs').mkdir()
    for nb in NOTEBOOKS:
        shutil.copy2(ROOT / 'nbs' / nb, tmp / 'nbs' / nb)
    settings = tmp / 'settings' / '@jupyterlab' / 'apputils-extension'
    settings.mkdir(parents=True)  # no news or update checks (no network here), no prompt about them
    (settings / 'notification.jupyterlab-settings').write_text(
        json.dumps({'fetchNews': 'false', 'checkForUpdates': False})
    )
    nbset = tmp / 'settings' / '@jupyterlab' / 'notebook-extension'
    nbset.mkdir(parents=True)  # every cell in the page (no windowing), so that every output can be read
    (nbset / 'tracker.jupyterlab-settings').write_text(json.dumps({'windowingMode': 'none'}))
    env = {k: v for k, v in os.environ.items() if k != 'MPLBACKEND'}  # the kernel's own inline backend, as for a reader
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(tmp / 'settings'),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / 'workspaces'),
        JUPYTER_RUNTIME_DIR=str(tmp / 'runtime'),
        JUPYTER_CONFIG_DIR=str(tmp / 'config'),
        OMP_WAIT_POLICY='PASSIVE',
    )
    port = free_port()
    log = open(tmp / 'lab.log', 'w')
    proc = subprocess.Popen(
        [
            sys.executable,
            '-m',
            'jupyterlab',
            '--no-browser',
            '--ip=127.0.0.1',
            f'--port={port}',
            '--IdentityProvider.token=',
            '--ServerApp.password=',
            f'--ServerApp.root_dir={tmp / "nbs"}',
            '--ServerApp.open_browser=False',
            '--allow-root',
            '--LabApp.news_url=None',
            '--LabApp.extension_manager=readonly',
            '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + 'api', timeout=1)
                break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                break
        else:
            pytest.fail('JupyterLab did not start:\n' + (tmp / 'lab.log').read_text()[-2000:])
        if proc.poll() is not None:
            pytest.fail('JupyterLab exited:\n' + (tmp / 'lab.log').read_text()[-2000:])
        with chromium() as browser:
            yield url, browser, tmp
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


DONE = """n => {
        const p = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
        if (p.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status') !== 'idle') return false;
        const prompts = [...p.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
        return prompts.length === n && prompts.every(t => /^\\[\\d+\\]:$/.test(t));
    }"""


def wait_done(page, n: int, shot: Path, timeout_ms: int = 150_000):
    "Wait until the kernel is idle and all `n` code cells carry an execution number; on timeout, say where it stopped."
    try:
        page.wait_for_function(DONE, arg=n, timeout=timeout_ms)
    except Exception:
        page.screenshot(path=str(shot))
        prompts = page.eval_on_selector_all(
            '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt', 'es => es.map(e => e.textContent)'
        )
        pytest.fail(f'not done after {timeout_ms / 1000:.0f} s: prompts {prompts}; screenshot {shot}')


def _menu(page, menu: str, item: str):
    page.locator('#jp-MainMenu .lm-MenuBar-itemLabel', has_text=menu).first.click()
    page.locator('.lm-Menu-itemLabel', has_text=item).first.click()


@pytest.mark.parametrize('nb,figures', NOTEBOOKS.items())
def test_run_all_cells(lab, nb, figures):
    url, browser, tmp = lab
    page = browser.new_page(viewport={'width': 1400, 'height': 900})
    problems = watch(page)
    page.goto(f'{url}lab/tree/{nb}?reset')  # ?reset: no tabs restored from the last test
    page.locator('.jp-NotebookPanel .jp-Notebook .jp-Cell').first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator')"
        "?.getAttribute('data-status') === 'idle'",
        timeout=60_000,
    )
    page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell').first.click()  # the notebook is the current widget
    _menu(page, 'Run', 'Run All Cells')
    code = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell')
    n = code.count()
    assert n > 3
    # idle, and every code cell has been given its execution number
    wait_done(page, n, tmp / f'{nb}.timeout.png')
    panel = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden)')
    bad = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    texts = bad.all_inner_texts()
    assert not texts, f'{nb}: error or stderr output:\n' + '\n---\n'.join(t[:600] for t in texts)
    shown = panel.locator('.jp-RenderedImage img').count()
    assert shown >= figures, f'{nb}: {shown} figures shown, expected {figures}'
    page.screenshot(path=str(tmp / f'{nb}.png'))
    _menu(page, 'Kernel', 'Shut Down Kernel')
    assert not [p for p in problems if 'favicon' not in p], '\n'.join(problems)
    page.close()
