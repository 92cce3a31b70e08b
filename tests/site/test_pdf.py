"""The PDF edition (`make pdf`, run by `make check-site` first): whole, titled and linked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pypdf = pytest.importorskip("pypdf")

ROOT = Path(__file__).resolve().parents[2]
PDF = ROOT / "_build" / "pdf" / "parameter-sharing.pdf"
SITE = ROOT / "_build" / "html"
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))

pytestmark = pytest.mark.skipif(not PDF.exists(), reason="no PDF: run `make pdf` first")


def _title(chapter: Path) -> str:
    cells = json.loads(chapter.read_text(encoding="utf-8"))["cells"]
    return "".join(cells[0]["source"]).splitlines()[0].lstrip("# ").strip()


@pytest.fixture(scope="module")
def reader():
    return pypdf.PdfReader(str(PDF))


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("\u2019", "'")


def test_every_chapter_is_in_the_pdf_under_its_title(reader):
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    for chapter in CHAPTERS:
        title = _title(chapter)
        assert title in outline, f"{chapter.name}: no bookmark {title!r} in {outline}"
        page = reader.get_destination_page_number(reader.outline[outline.index(title)])
        text = _normalised(reader.pages[page].extract_text())
        assert _normalised(title)[:30] in text, f"{title!r} not on its first page"


def test_the_pdf_is_a_book_with_figures_and_typeset_math(reader):
    pages = len(reader.pages)
    assert pages >= 150, f"only {pages} pages: pages of the site are missing"
    images = sum(len(page.images) for page in reader.pages)  # the plots; diagrams are vector
    assert images >= 2 * len(CHAPTERS), f"{images} images in the PDF: figures did not print"
    text = " ".join(page.extract_text() for page in reader.pages[:40])
    assert "\\frac" not in text and "$$" not in text, "formulas printed as TeX: MathJax did not run"


def test_the_site_links_to_the_pdf():
    assert (SITE / "parameter-sharing.pdf").exists()
    assert "parameter-sharing.pdf" in (SITE / "index.html").read_text(encoding="utf-8") or (
        "parameter-sharing.pdf" in (SITE / "book" / "intro.html").read_text(encoding="utf-8")
    )
