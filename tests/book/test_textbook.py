"""The chapters read as a textbook: key terms, a diagram, checks out of the way, exercises.

These are the conventions of issue 16, checked on the committed notebooks (no execution):

- a **key-terms box** near the start (``:class: key-terms``) whose terms all have a glossary entry;
- at least one **schematic diagram**, a figure whose alt text begins "Diagram:";
- **verification out of the way**: a visible code cell asserts at most two things; cells that
  assert more are check cells, collapsed on the site under one label; the live explorer's code is
  removed from the site (its static twin stays);
- **code lines of at most 88 characters**, so that nothing scrolls sideways;
- **exercises** marked with difficulty and expected time, each with a solution that explains its
  reasoning, at least one per chapter checked by code (the student edition's autograder).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from student_edition import EXERCISE  # noqa: E402  (one definition of an exercise heading)

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
GLOSSARY = ROOT / "book" / "glossary.md"

CHECK_LABEL = "Show the check"
SOLUTION_LABEL = "Show the solution"
TERM_ROLE = re.compile(r"\{term\}`([^`]+)`")
MAX_LINE = 88
MAX_VISIBLE_ASSERTS = 2


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _term_target(role_text: str) -> str:
    """``{term}`text <target>``` refers to ``target``; ``{term}`target``` to itself."""
    match = re.fullmatch(r"(.*?)\s*<([^>]+)>", role_text.strip(), re.S)
    return (match.group(2) if match else role_text).strip()


def glossary_terms() -> set[str]:
    """The terms the glossary defines: the unindented lines inside its ``{glossary}`` block."""
    text = GLOSSARY.read_text(encoding="utf-8")
    terms = set()
    for block in re.findall(r"```\{glossary\}\n(.*?)\n```", text, re.S):
        for line in block.splitlines():
            if line and not line[0].isspace() and not line.startswith(":"):
                terms.add(line.strip().lower())
    return terms


def key_terms_box(path: Path) -> str:
    for cell in _cells(path)[:4]:
        text = _source(cell)
        match = re.search(
            r"(```|:::)\{admonition\} Key terms\n:class: key-terms\n(.*?)\n\1", text, re.S
        )
        if cell["cell_type"] == "markdown" and match:
            return match.group(2)
    return ""


def assertion_lines(text: str) -> int:
    return sum(
        1
        for line in text.splitlines()
        if line.strip().startswith(("assert ", "assert(", "claim(")) or " = claim(" in line
    )


def alt_texts(path: Path) -> list[str]:
    alts = []
    for cell in _cells(path):
        metadata = cell.get("metadata", {})
        alt = metadata.get("mystnb", {}).get("image", {}).get("alt")
        if alt:
            alts.append(alt)
        if cell["cell_type"] == "markdown":
            alts += re.findall(r"^:alt:\s*(.+)$", _source(cell), re.M)
    return alts


def exercises(path: Path) -> list[dict]:
    """Each exercise: its number, difficulty, minutes and the cells up to the next one."""
    cells = _cells(path)
    found = []
    for index, cell in enumerate(cells):
        match = EXERCISE.search(_source(cell)) if cell["cell_type"] == "markdown" else None
        if match:
            found.append(
                {
                    "number": int(match.group(1)),
                    "difficulty": match.group(2),
                    "minutes": int(match.group(3)),
                    "start": index,
                }
            )
    for this, following in zip(found, [*found[1:], None], strict=True):
        end = following["start"] if following else len(cells)
        this["cells"] = cells[this["start"] + 1 : end]
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem[:2])
def test_key_terms_box_near_the_start_and_every_term_in_the_glossary(path):
    box = key_terms_box(path)
    assert box, f"{path.name}: no ```{{admonition}} Key terms / :class: key-terms box in cells 1-4"
    terms = [_term_target(t).lower() for t in TERM_ROLE.findall(box)]
    assert len(terms) >= 3, f"{path.name}: the key-terms box names {len(terms)} terms"
    missing = sorted(set(terms) - glossary_terms())
    assert not missing, f"{path.name}: key terms without a glossary entry: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem[:2])
def test_a_schematic_diagram(path):
    diagrams = [alt for alt in alt_texts(path) if alt.startswith("Diagram:")]
    assert diagrams, f"{path.name}: no figure whose alt text begins 'Diagram:'"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem[:2])
def test_verification_is_collapsed_and_explorer_code_removed(path):
    for index, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        tags, text = _tags(cell), _source(cell)
        where = f"{path.name} cell {index} ({text.splitlines()[0][:50] if text else ''!r})"
        prompts = cell.get("metadata", {}).get("mystnb", {})
        if "check" in tags:
            assert "hide-input" in tags, f"{where}: a check cell must be tagged hide-input"
            assert prompts.get("code_prompt_show") == CHECK_LABEL, f"{where}: label"
        elif "solution" in tags:
            assert "hide-cell" in tags, f"{where}: a solution must be tagged hide-cell"
            assert prompts.get("code_prompt_show") == SOLUTION_LABEL, f"{where}: label"
        elif "exercise-check" not in tags:
            assert assertion_lines(text) <= MAX_VISIBLE_ASSERTS, (
                f"{where}: {assertion_lines(text)} assertions in a visible cell; move them "
                "to a check cell below it (tags check + hide-input, label 'Show the check')"
            )
        if re.search(r"\.live\(\)\s*$", text, re.M):
            assert "remove-cell" in tags, f"{where}: the live explorer's cell is remove-cell"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem[:2])
def test_code_lines_fit_the_page(path):
    long = [
        (index, line)
        for index, cell in enumerate(_cells(path))
        if cell["cell_type"] == "code"
        for line in _source(cell).splitlines()
        # the Colab install line holds the repository URL that test_repo.py checks
        if len(line) > MAX_LINE and not line.lstrip().startswith("%pip install")
    ]
    assert not long, f"{path.name}: {len(long)} code lines over {MAX_LINE} characters: {long[:3]}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem[:2])
def test_exercises_marked_solved_with_reasons_and_some_checked(path):
    found = exercises(path)
    assert found, f"{path.name}: no '### Exercise N (easy|medium|hard, M min)' headings"
    assert [e["number"] for e in found] == list(range(1, len(found) + 1))
    checked = 0
    for exercise in found:
        name = f"{path.name} exercise {exercise['number']}"
        solutions = [c for c in exercise["cells"] if "solution" in _tags(c)]
        reasons = [
            c
            for c in solutions
            if c["cell_type"] == "markdown" and ":class: dropdown" in _source(c)
        ]
        assert any(c["cell_type"] == "code" for c in solutions), f"{name}: no solution code"
        assert reasons, f"{name}: no solution explanation (a markdown dropdown tagged solution)"
        checks = [c for c in exercise["cells"] if "exercise-check" in _tags(c)]
        checked += bool(checks)
        for check in checks:
            assert assertion_lines(_source(check)) >= 1, f"{name}: a check that asserts nothing"
        assert 2 <= exercise["minutes"] <= 90, f"{name}: {exercise['minutes']} min"
    assert checked >= 1, f"{path.name}: no exercise has an exercise-check cell for the grader"


def test_glossary_is_one_block_without_duplicates():
    text = GLOSSARY.read_text(encoding="utf-8")
    block = re.findall(r"```\{glossary\}\n(.*?)\n```", text, re.S)
    assert block
    names = [
        line.strip().lower()
        for b in block
        for line in b.splitlines()
        if line and not line[0].isspace() and not line.startswith(":")
    ]
    assert len(names) == len(set(names)), "a glossary term is defined twice"
