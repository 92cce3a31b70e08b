"""Repository hygiene: notebooks are committed clean and follow the book's conventions."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_there_are_chapters_and_each_is_in_the_toc():
    assert CHAPTERS
    toc = (ROOT / "_toc.yml").read_text()
    for path in CHAPTERS:
        assert f"chapters/{path.stem}" in toc, f"{path.name} is missing from _toc.yml"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; run `make strip`"
    assert "widgets" not in notebook["metadata"], f"{path.name}: widget state; run `make strip`"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_opens_with_title_and_colab_only_setup_cell(path):
    cells = json.loads(path.read_text())["cells"]
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    setup = "".join(cells[1]["source"])
    assert cells[1]["cell_type"] == "code"
    # One source of truth: the install URL is the repository URL of _config.yml.
    assert f'"shared_lib[book] @ git+{repository_url()}"' in setup  # with the chapters' extra
    assert re.search(r'if "google\.colab" in sys\.modules:\n\s+%pip install', setup)
    assert "seed_everything" in setup and "get_device()" in setup


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_has_explorer_twin_takeaways_and_hidden_solutions(path):
    cells = json.loads(path.read_text())["cells"]
    text = "\n".join("".join(c["source"]) for c in cells)
    assert ".live()" in text and ".static()" in text
    assert "## Key takeaways" in text and "## Exercises" in text
    assert any("hide-cell" in c.get("metadata", {}).get("tags", []) for c in cells)


VERDICT = r"(holds in part|holds|wrong)"


#: Claims on trial (../shared/CHAPTERS.md): every one gets a verdict.
CLAIMS = {f"C{n}" for n in range(1, 11)}


def chapter_verdicts() -> dict[str, dict[str, set[str]]]:
    """claim -> chapter stem -> verdicts, from the chapters' "**Verdict on Cn ...: v" lines."""
    found: dict[str, dict[str, set[str]]] = {}
    for path in CHAPTERS:
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for claim, verdict in re.findall(r"\*\*Verdict on (C\d+)\b[^*]*?:\s*" + VERDICT, text):
            found.setdefault(claim, {}).setdefault(path.stem, set()).add(verdict)
    return found


def verdict_rows(text: str) -> dict[str, tuple[str, set[str]]]:
    """claim -> (verdict, linked chapter stems) from a Markdown verdict table."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"\| (C\d+) \|.*?\| \*\*" + VERDICT + r"\*\*[^|]*\|(.*)\|\s*$", line)
        if match:
            claim, verdict, rest = match.groups()
            assert claim not in rows, f"{claim} has two rows"
            rows[claim] = (verdict, set(re.findall(r"(\d\d_\w+)\.ipynb", rest)))
    return rows


def test_one_verdict_per_claim_everywhere():
    for claim, chapters in chapter_verdicts().items():
        said = set().union(*chapters.values())
        assert len(said) == 1, f"{claim} gets the verdicts {said} in {sorted(chapters)}"


def test_claims_page_and_chapter_09_agree_with_the_chapters():
    verdicts = chapter_verdicts()
    assert set(verdicts) == CLAIMS, (
        f"claims without a verdict in a chapter: {CLAIMS - set(verdicts)}"
    )
    chapter_09 = ROOT / "chapters" / "09_final_considerations.ipynb"
    pages = {
        "book/claims.md": (ROOT / "book" / "claims.md").read_text(),
        "chapter 09": "\n".join(
            "".join(c["source"]) for c in json.loads(chapter_09.read_text())["cells"]
        ),
    }
    for page, text in pages.items():
        rows = verdict_rows(text)
        assert set(rows) == CLAIMS, f"{page}: rows for {sorted(rows)}"
        for claim, (verdict, linked) in rows.items():
            chapters = verdicts[claim]
            assert set(chapters) <= linked, (
                f"{page}, {claim}: link the evidence in {set(chapters) - linked}"
            )
            said = set().union(*chapters.values())
            assert said == {verdict}, f"{page}, {claim}: {verdict!r} but the chapters say {said}"


def test_wheel_installs_and_imports_outside_the_repository(tmp_path):
    """`pip wheel .` gives a wheel with every subpackage and loose dependency bounds."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("shared_lib-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        archive.extractall(tmp_path / "site")
    assert "shared_lib/models/transformer.py" in names
    assert "shared_lib/book/ledger.json" in names  # the chapters read their seed rates from it
    requirements = [  # the version part, before any environment marker (`; extra == ...`)
        line.split(";")[0] for line in metadata.splitlines() if line.startswith("Requires-Dist")
    ]
    assert requirements and not any("==" in line for line in requirements), requirements
    probe = (
        "import shared_lib, shared_lib.models as m; "
        "print(shared_lib.__file__); print(shared_lib.count_parameters(m.GPT(m.GPTConfig("
        "vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, count = result.stdout.split()
    assert module_file.startswith(str(tmp_path / "site"))
    assert int(count) > 0
