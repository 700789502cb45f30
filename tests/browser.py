"""Helpers of the browser tests: Debian's Chromium driven by Playwright (never a downloaded browser), a static server.

The tests that use them skip unless Chromium and Playwright are installed, and fail instead of skipping when
`HEBBNB_BROWSER_TESTS=1` (as `.ci/run` sets it).
"""

from __future__ import annotations
import functools, http.server, os, shutil, socket, threading
from contextlib import contextmanager
import pytest

CHROMIUM = os.environ.get('HEBBNB_CHROMIUM', '/usr/bin/chromium')
FLAGS = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
]  # the last ones: no connections to the (closed) outside


def require_browser():
    "Skip (fail with HEBBNB_BROWSER_TESTS=1) without Chromium or Playwright; return Playwright's sync_playwright."
    why = None
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        why = f'no Chromium at {CHROMIUM} (apt-get install chromium)'
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = why or 'no playwright (pip install -e ".[docs]")'
    if why:
        if os.environ.get('HEBBNB_BROWSER_TESTS') == '1':
            pytest.fail(why)
        pytest.skip(why + '; HEBBNB_BROWSER_TESTS=1 makes this a failure')
    os.environ['PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD'] = '1'
    return sync_playwright


@contextmanager
def chromium():
    "A headless Debian Chromium with a fresh profile (Playwright makes a new user-data dir per launch)."
    sync_playwright = require_browser()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@contextmanager
def serve(folder) -> str:
    "Serve `folder` on 127.0.0.1 in a thread; yield its base URL."
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(folder)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f'http://127.0.0.1:{srv.server_address[1]}/'
    finally:
        srv.shutdown()
        srv.server_close()


def watch(page) -> list[str]:
    "Collect console errors, uncaught page errors and failed or 4xx/5xx requests of `page`."
    problems = []
    page.on(
        'console', lambda m: m.type == 'error' and problems.append(f'console: {m.text} ({m.location.get("url", "")})')
    )
    page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
    page.on('requestfailed', lambda req: problems.append(f'request failed: {req.url} ({req.failure})'))
    page.on('response', lambda resp: resp.status >= 400 and problems.append(f'HTTP {resp.status}: {resp.url}'))
    return problems
