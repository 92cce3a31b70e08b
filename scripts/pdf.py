"""The PDF edition: every page of the built website, in the table of contents' order, in one file.

    python scripts/pdf.py [--site _build/html] [--out _build/pdf/parameter-sharing.pdf]

Needs the built site (`make site`) and Debian's chromium, which Playwright drives (nothing is
downloaded). Each page is opened from a local server, MathJax is given time to typeset, and the
page is printed with the theme's print style (no sidebars); the pages are then joined with one
bookmark per page. The PDF is also copied into the site, where the intro links to it. The API
reference stays on the website (:data:`LEFT_OUT`).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import io
import shutil
import sys
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PDF_NAME = "parameter-sharing.pdf"
#: Shown only in print: the page's links work in the PDF, but buttons and toggles do not.
PRINT_CSS = """
@media print {
  .bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .prev-next-area,
  .bd-footer, .bd-footer-content, .sl-twin-controls, .bd-header-announcement {
    display: none !important;
  }
  .bd-main .bd-content .bd-article-container { max-width: 100% !important; }
  .bd-container, .bd-main, .bd-content { display: block !important; }
  img.sl-frame { max-width: 100% !important; }
  details.hide { display: none !important; }
  pre { white-space: pre-wrap !important; word-break: break-word; }
  /* the A4 column holds about 80 characters at the site's size: smaller, an 88-column code
     line (chapters/ruff.toml) prints on one line instead of wrapping mid-expression */
  div.cell div.cell_input pre, div.cell div.cell_output pre { font-size: 0.64em !important; }
}
"""


#: The API reference is left out of the PDF: it is generated from the docstrings, runs to about
#: 300 printed pages, and is better read on the website, where it is searchable.
LEFT_OUT = ("book/api/",)


def toc_pages(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The book's pages (paths without suffix) in reading order, the API reference left out."""
    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    pages = [data["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))

    for part in data.get("parts", []):
        walk(part.get("chapters", []))
    return [page for page in pages if not page.startswith(LEFT_OUT)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _print_page(browser, url: str) -> tuple[bytes, str]:
    page = browser.new_page(viewport={"width": 1100, "height": 1400})
    page.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith("http://127.0.0.1")
            or route.request.url.startswith("data:")
            else route.abort()
        ),
    )
    page.goto(url, wait_until="load")
    page.add_style_tag(content=PRINT_CSS)
    # Figures below the fold are lazy-loaded and would print blank: load every image first.
    page.evaluate(
        """() => Promise.all([...document.images].map((image) => {
            image.loading = "eager";
            return image.complete ? null : new Promise((done) => {
                image.onload = image.onerror = done;
            });
        }))"""
    )
    page.evaluate(
        "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        " ? MathJax.startup.promise : null"
    )
    page.emulate_media(media="print")
    title = page.title().split("—")[0].split(" | ")[0].strip()
    pdf = page.pdf(
        format="A4",
        print_background=True,
        margin={"top": "16mm", "bottom": "16mm", "left": "14mm", "right": "14mm"},
        display_header_footer=True,
        header_template="<span></span>",
        footer_template=(
            '<div style="font-size:8px;width:100%;text-align:center;color:#666">'
            '<span class="title"></span> · <span class="pageNumber"></span></div>'
        ),
    )
    page.close()
    return pdf, title


def build_pdf(site: Path, out: Path) -> dict:
    """Print every page of ``site`` into ``out``; returns pages, PDF pages and seconds."""
    from playwright.sync_api import sync_playwright
    from pypdf import PdfReader, PdfWriter

    if not (site / "index.html").exists():
        raise SystemExit(f"--site {site} holds no built website: run `make site` first")
    if not Path(CHROMIUM).exists():
        raise SystemExit("Debian's chromium is missing: `make browser` installs it with apt-get")
    start = time.time()
    server, base = _serve(site)
    writer, count = PdfWriter(), 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-background-networking"],
            )  # fmt: skip
            for name in toc_pages():
                html = site / f"{name}.html"
                if not html.exists():
                    raise SystemExit(f"{html} is missing: the site build is incomplete")
                pdf, title = _print_page(browser, f"{base}/{name}.html")
                reader = PdfReader(io.BytesIO(pdf))
                first = len(writer.pages)
                for sheet in reader.pages:
                    writer.add_page(sheet)
                writer.add_outline_item(title, first)
                count += 1
            browser.close()
    finally:
        server.shutdown()
    writer.add_metadata({"/Title": "Parameter Sharing — an interactive textbook"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        writer.write(handle)
    shutil.copyfile(out, site / PDF_NAME)  # the intro links to it
    return {"pages": count, "pdf_pages": len(writer.pages), "seconds": time.time() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / PDF_NAME)
    args = parser.parse_args(argv)
    result = build_pdf(args.site, args.out)
    print(
        f"PDF edition: {result['pages']} pages of the site, {result['pdf_pages']} PDF pages, "
        f"in {result['seconds']:.0f} s: {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
