"""The built website in a real headless Chromium (`make check-site`).

Every page: renders without console errors, requests nothing but loopback, every image loads.
Every static twin: changing a control changes the chart. Every chapter: the Colab link is right,
screenshots in light and dark mode land in `_build/screenshots/`, and the page weight (bytes
transferred, assets shared by the whole site counted apart) is reported in
`_build/page-weights.txt`.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


SITE = ROOT / "_build" / "html"


SHOTS = ROOT / "_build" / "screenshots"


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


PAGES = sorted(
    p.relative_to(SITE).as_posix()
    for p in (SITE.rglob("*.html") if SITE.exists() else [])
    if not p.relative_to(SITE).as_posix().startswith(("_", "."))  # theme templates, caches
)


CHAPTERS = [p for p in PAGES if p.startswith("chapters/")]


#: Per chapter page, bytes of its own (HTML, its images): the budget of issue #7.
PAGE_BUDGET_BYTES = 3_000_000


playwright = pytest.importorskip("playwright.sync_api")


pytestmark = pytest.mark.skipif(not PAGES, reason="site not built: run `make site` first")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def server():
    handler = functools.partial(QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make check-site` installs it with apt-get")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
            ],
        )
        yield browser
        browser.close()


class PageVisit:
    """Open one page, recording console errors, off-machine requests and transferred bytes."""

    def __init__(self, browser, url: str, color_scheme: str = "light"):
        self.context = browser.new_context(
            color_scheme=color_scheme, viewport={"width": 1280, "height": 900}
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.remote: list[str] = []
        self.bytes: dict[str, int] = {}
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.route("**/*", self._route)
        self.page.on("requestfinished", self._finished)
        self.page.goto(url, wait_until="networkidle")

    def _console(self, message) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _route(self, route) -> None:
        host = urlparse(route.request.url).hostname
        if route.request.url.startswith("data:") or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            self.remote.append(route.request.url)
            route.abort()

    def _finished(self, request) -> None:
        if request.url.startswith("data:"):
            return
        sizes = request.sizes()
        self.bytes[request.url] = sizes["responseBodySize"] + sizes["responseHeadersSize"]

    def close(self) -> None:
        self.context.close()


def broken_images(page) -> list[str]:
    return page.evaluate(
        """() => Array.from(document.images)
            .filter(img => !img.complete || img.naturalWidth === 0)
            .map(img => (img.getAttribute('src') || '').slice(0, 80))"""
    )


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_offline_without_errors(server, browser, path):
    visit = PageVisit(browser, f"{server}/{path}")
    try:
        assert not visit.remote, f"{path} asked another host for {visit.remote}"
        assert not visit.errors, f"{path} logged console errors: {visit.errors}"
        assert not broken_images(visit.page), f"{path} has images that did not load"
    finally:
        visit.close()


@pytest.mark.parametrize("path", CHAPTERS)
def test_static_twins_react_to_their_controls(server, browser, path):
    visit = PageVisit(browser, f"{server}/{path}")
    page = visit.page
    try:
        twins = page.locator(".sl-twin")
        assert twins.count() >= 1, f"{path} has no static twin"
        for i in range(twins.count()):
            twin = twins.nth(i)
            controls = twin.locator("[data-control]")
            assert controls.count() >= 1
            for j in range(controls.count()):
                control = controls.nth(j)
                before = (twin.get_attribute("data-state"), _frame(twin))
                if control.evaluate("el => el.tagName") == "SELECT":
                    options = control.locator("option").count()
                    current = int(control.input_value())
                    control.select_option(index=(current + 1) % options)
                else:
                    maximum = control.get_attribute("max")
                    current = control.input_value()
                    control.fill("0" if current == maximum else maximum)
                after = (twin.get_attribute("data-state"), _frame(twin))
                assert after[0] != before[0], f"{path}: twin {i} control {j} changed no state"
                assert after[1] != before[1], f"{path}: twin {i} control {j} changed no chart"
        assert not visit.errors
    finally:
        visit.close()


@pytest.mark.parametrize("path", CHAPTERS)
def test_nothing_runs_past_the_column(server, browser, path):
    """At a common laptop width no output, twin frame or code line is cut off or scrolls.

    Printed outputs wrap (book.css) and their tables are kept narrow enough not to need it; a
    twin frame shrinks to the column; code holds 88 columns. The Colab install line is the one
    exception (its URL is pinned whole by tests/book/test_repo.py).
    """
    visit = PageVisit(browser, f"{server}/{path}")
    try:
        overflow = visit.page.evaluate(
            """() => {
                const found = [];
                document.querySelectorAll("div.cell_output pre, div.cell_input pre")
                    .forEach(pre => {
                        if (pre.scrollWidth > pre.clientWidth + 1
                                && !pre.textContent.includes("%pip install")) {
                            found.push(pre.textContent.trim().slice(0, 60));
                        }
                    });
                document.querySelectorAll(".sl-twin img.sl-frame").forEach(img => {
                    const box = img.closest(".cell_output") || img.parentElement;
                    if (img.getBoundingClientRect().right
                            > box.getBoundingClientRect().right + 1) {
                        found.push("twin frame wider than its column");
                    }
                });
                return found;
            }"""
        )
        assert not overflow, f"{path}: cut off or scrolling sideways: {overflow}"
    finally:
        visit.close()


def _frame(twin) -> str:
    return twin.locator("img.sl-frame").get_attribute("src")


@pytest.fixture(scope="module")
def weights_report():
    report = ROOT / "_build" / "page-weights.txt"
    report.write_text("page\tbytes of its own\tbytes of assets shared by the site\n")
    return report


@pytest.mark.parametrize("path", CHAPTERS)
def test_colab_link_screenshots_and_page_weight(server, browser, weights_report, path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    expected = (
        "https://colab.research.google.com/github/"
        f"{url.removeprefix('https://github.com/')}/blob/main/{path.removesuffix('.html')}.ipynb"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    stem = Path(path).stem
    for scheme in ("light", "dark"):
        visit = PageVisit(browser, f"{server}/{path}", color_scheme=scheme)
        try:
            links = visit.page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
            assert expected in links, f"{path}: no Colab link {expected}"
            visit.page.screenshot(path=str(SHOTS / f"{stem}-{scheme}.png"), full_page=True)
            if scheme == "light":
                own = sum(n for u, n in visit.bytes.items() if "/_static/" not in u)
                shared = sum(n for u, n in visit.bytes.items() if "/_static/" in u)
                with weights_report.open("a") as report:
                    report.write(f"{path}\town {own:,} B\tshared site assets {shared:,} B\n")
                assert own <= PAGE_BUDGET_BYTES, f"{path} transfers {own:,} B of its own"
        finally:
            visit.close()
