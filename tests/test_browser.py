"""The rendered book in a real browser: Debian's Chromium, driven by Playwright's Python API
(nothing is downloaded: Playwright is pointed at the system's Chromium).

Each chapter page is served from ``_build/html`` on localhost and must load without console
errors and without asking for anything outside the book (MathJax included), with every
formula typeset, every figure present and decoded, no error output rendered,
and every table-of-contents link resolving. A screenshot per page goes to
``test-artifacts/screenshots``. Skipped, saying why, without Chromium or without a built book.
"""

import functools
import http.server
import json
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SITE = Path(os.environ.get("VGGBOOK_SITE", ROOT / "_build" / "html"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = ROOT / "test-artifacts" / "screenshots"
PAGES = [
    "book/intro",
    "book/01_architecture",
    "book/02_data_augmentation",
    "book/03_training",
    "book/04_init_transfer",
    "book/05_evaluation",
    "book/06_findings",
    "book/07_report",
    "book/appendix_recipes",
    "book/references",
]

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)"
    ),
    pytest.mark.skipif(
        not (SITE / "index.html").exists(), reason=f"no built book at {SITE}: make html"
    ),
]
playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.mark.parametrize("page_name", [p for p in PAGES if (SITE / f"{p}.html").exists()])
def test_page_renders(server, browser, page_name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    local = server + "/"
    page.on(
        "console",
        lambda m: m.type == "error" and errors.append(f"{m.text} @ {m.location.get('url')}"),
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    # The book must not need the network: every request elsewhere is refused and fails the test.
    external = []
    page.route(
        "**/*",
        lambda r: (
            r.continue_()
            if r.request.url.startswith(local)
            else (external.append(r.request.url), r.abort())
        ),
    )
    response = page.goto(f"{server}/{page_name}.html", wait_until="networkidle")
    assert response.status == 200
    assert external == [], f"the page asks for outside resources: {external[:3]}"
    assert errors == []
    formulas = len(page.query_selector_all("main .math"))
    if formulas:  # MathJax (served from _static) typeset every formula
        page.wait_for_function(
            f"document.querySelectorAll('main mjx-container').length >= {formulas}", timeout=15000
        )
        assert page.query_selector_all("main mjx-merror") == []
    images = page.eval_on_selector_all(
        "main img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"
    )
    assert all(ok for _, ok in images), [src for src, ok in images if not ok]
    notebook = ROOT / f"{page_name}.ipynb"
    if notebook.exists():  # every figure the chapter stored is on the page
        stored = sum(
            "image/png" in o.get("data", {})
            for c in json.loads(notebook.read_text())["cells"]
            for o in c.get("outputs", [])
        )
        assert len(images) >= stored
    text = page.inner_text("main")
    assert "Traceback" not in text and "FAIL " not in text
    assert page.query_selector_all("main .output.traceback, main .output.error") == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{page_name.split('/')[-1]}.png", full_page=False)
    links = page.eval_on_selector_all("nav a.reference.internal", "els => els.map(e => e.href)")
    assert links
    for href in {link.split("#")[0] for link in links}:
        with urllib.request.urlopen(href) as r:
            assert r.status == 200, href
    page.close()
