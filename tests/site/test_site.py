"""Checks of the built website (`make check-site` runs them after `jupyter-book build`).

The site must work offline: every script, style, font, image and frame comes from the site.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


SITE = ROOT / "_build" / "html"


PAGES = sorted(
    p
    for p in (SITE.rglob("*.html") if SITE.exists() else [])
    if not p.relative_to(SITE).as_posix().startswith(("_", "."))  # theme templates, caches
)


CHAPTER_PAGES = [p for p in PAGES if p.parent.name == "chapters"]


pytestmark = pytest.mark.skipif(not PAGES, reason="site not built: run `make site` first")


class AssetParser(HTMLParser):
    """Collects every URL a browser would fetch by itself when opening the page."""

    FETCHED: ClassVar[dict[str, str]] = {
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "embed": "src",
    }

    def __init__(self):
        super().__init__()
        self.assets: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.FETCHED and attrs.get(self.FETCHED[tag]):
            self.assets.append(attrs[self.FETCHED[tag]])
        rel = (attrs.get("rel") or "").lower()
        if tag == "link" and attrs.get("href") and rel in {"stylesheet", "preload", "icon"}:
            self.assets.append(attrs["href"])


def remote(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url.strip()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(SITE)))
def test_page_fetches_nothing_from_another_host(page):
    parser = AssetParser()
    parser.feed(page.read_text(encoding="utf-8"))
    offenders = [url for url in parser.assets if remote(url)]
    assert not offenders, f"{page.name} loads remote assets: {offenders}"
    # CSS may pull fonts or images by url(...): no remote ones either.
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", text)


def test_stylesheets_fetch_nothing_remote():
    for css in SITE.rglob("*.css"):
        text = css.read_text(encoding="utf-8", errors="replace")
        assert not re.search(r"@import\s+url\(\s*['\"]?(https?:)?//", text), css
        assert not re.search(r"url\(\s*['\"]?https?://", text), css


def test_mathjax_is_served_by_the_site():
    assert (SITE / "_static" / "mathjax" / "tex-chtml.js").exists()


def test_every_chapter_page_was_built_with_outputs_twin_and_colab_link():
    assert CHAPTER_PAGES
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    github_path = url.removeprefix("https://github.com/")
    for page in CHAPTER_PAGES:
        text = page.read_text(encoding="utf-8")
        assert 'class="sl-twin"' in text, f"{page.name}: no static twin"
        assert "data:image/png;base64," in text, f"{page.name}: no figures"
        colab = f"https://colab.research.google.com/github/{github_path}/blob/main/chapters/"
        assert colab + page.stem + ".ipynb" in text, f"{page.name}: no Colab link"
        assert "Traceback" not in text, f"{page.name}: an error was rendered"


def test_twins_speak_words_checks_are_collapsed_and_live_code_is_gone():
    """Issue 16: explorers labelled in words, checks under one label, no live-explorer code."""
    for page in CHAPTER_PAGES:
        text = page.read_text(encoding="utf-8")
        for twin in re.findall(r'<div class="sl-twin-controls">(.*?)</div>', text, re.S):
            labels = re.findall(r"<label>([^<]*)<", twin)
            assert labels, f"{page.name}: a twin without labelled controls"
            assert not [label for label in labels if "_" in label], f"{page.name}: {labels}"
        assert "explorer.live()" not in text, f"{page.name}: the live explorer's code is shown"
        assert "Show the check" in text, f"{page.name}: no collapsed check"
        assert "Show the solution" in text, f"{page.name}: no collapsed solution"
        assert "Diagram:" in text, f"{page.name}: no diagram's alt text"


def test_reading_aids_exist_and_are_linked():
    """Glossary terms are linked from the chapters; API reference, how-to-run and bibliography."""
    for page in ("book/glossary.html", "book/api/index.html", "book/how_to_run.html"):
        assert (SITE / page).exists(), page
    linked = [p for p in CHAPTER_PAGES if "glossary.html#term-" in p.read_text(encoding="utf-8")]
    assert linked, "no chapter links a glossary term"
    bibliography = (SITE / "book" / "bibliography.html").read_text(encoding="utf-8")
    assert "Press" in bibliography and "Lan" in bibliography


def test_api_reference_has_one_page_per_core_module_and_one_for_the_chapters():
    pages = {"counting": "count_parameters", "tying": "tie", "sharing": "layer_assignment",
             "checkpoint": "save_checkpoint", "training": "train_steps", "uses": "trace_uses",
             "guards": "unique_parameters", "profiling": "memory_report",
             "distributed": "fsdp_units", "layers": "local.LocallyConnected2d",
             "models": "build_model", "models_transformer": "models.transformer.TransformerEncoder",
             "models_gpt": "models.gpt.GPT", "models_llama": "models.llama.Decoder",
             "data": "splits.digits",
             "plotting": "book_style", "explore": "Explorer",
             "chapters": "book.ch04_applications.train_language_model",
             "chapters_later": "book.ch05_challenges.conflict_model"}  # fmt: skip
    index = (SITE / "book" / "api" / "index.html").read_text(encoding="utf-8")
    models = (SITE / "book" / "api" / "models.html").read_text(encoding="utf-8")
    for page, name in pages.items():
        html = (SITE / "book" / "api" / f"{page}.html").read_text(encoding="utf-8")
        qualified = name if page.startswith(("chapters", "models_")) else f"{page}.{name}"
        assert f'id="shared_lib.{qualified}"' in html, (page, name)
        linked_from = index if not page.startswith("models_") else models
        assert f'href="{page}.html"' in linked_from, f"no link to {page} from its parent page"
        # Small pages that a reader can load: the old single page was 718 KB.
        assert len(html.encode()) < 400_000, f"{page}.html is {len(html.encode()):,} bytes"


def test_no_widget_state_is_shipped():
    """The site loads no widget JavaScript, so embedded widget state would be dead weight."""
    for page in PAGES:
        assert "application/vnd.jupyter.widget-state+json" not in page.read_text(encoding="utf-8")


def test_every_image_on_a_chapter_page_has_alt_text():
    for page in CHAPTER_PAGES:
        for tag in re.findall(r"<img\b[^>]*>", page.read_text(encoding="utf-8")):
            alt = re.search(r'alt="([^"]*)"', tag)
            assert alt and alt.group(1).strip(), f"{page.name}: image without alt text {tag[:120]}"


def test_internal_links_resolve():
    """Every relative link on every page points to a file the site has (and anchors exist)."""
    broken = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for href in re.findall(r'<a\b[^>]*\bhref="([^"]+)"', text):
            if remote(href) or href.startswith(("mailto:", "javascript:", "data:")):
                continue
            path, _, anchor = href.partition("#")
            target = (page.parent / path).resolve() if path else page
            if path and not target.exists():
                broken.append(f"{page.relative_to(SITE)} -> {href}")
            elif anchor and target.suffix == ".html":
                ids = set(re.findall(r'\bid="([^"]+)"', target.read_text(encoding="utf-8")))
                if anchor not in ids:
                    broken.append(f"{page.relative_to(SITE)} -> {href} (no such anchor)")
    assert not broken, broken[:10]


def test_the_claims_page_shows_the_evidence_ledger_under_each_verdict():
    from shared_lib.book import evidence

    ledger = evidence.load_ledger()
    claims = (SITE / "book" / "claims.html").read_text(encoding="utf-8")
    for n in range(1, 11):
        section = claims.split(f'id="c{n}"', 1)
        assert len(section) == 2, f"the claims page has no section for C{n}"
        supporting = [c for c, e in ledger["claims"].items() if e.get("supports") == f"C{n}"]
        body = section[1].split('<section id="c', 1)[0]
        for claim_id in supporting:
            assert f"[{claim_id}]" in body, f"C{n}: {claim_id} is not listed under its verdict"
    page = (SITE / "book" / "evidence.html").read_text(encoding="utf-8")
    assert "The ledger holds" in page and page.count("ledger-table") >= 9
    for claim_id in ledger["claims"]:
        assert f"[{claim_id}]" in page, f"the evidence page does not list {claim_id}"
