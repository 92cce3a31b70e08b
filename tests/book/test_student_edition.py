"""The student edition drops every solution and keeps every check; the grader uses the chapter's."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import student_edition  # noqa: E402

CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _cell(kind: str, text: str, tags=(), cell_id: str | None = None) -> dict:
    cell = {
        "cell_type": kind,
        "id": cell_id or f"c{abs(hash(text)) % 10**8}",
        "metadata": {},
        "source": [text],
    }
    if tags:
        cell["metadata"]["tags"] = list(tags)
    if kind == "code":
        cell |= {"outputs": [], "execution_count": None}
    return cell


def _chapter(folder: Path) -> Path:
    """A two-exercise chapter: the first is checked, the second is not."""
    cells = [
        _cell("markdown", "# A tiny chapter", cell_id="title"),
        _cell("code", "base = 20", cell_id="setup"),
        _cell(
            "markdown",
            "## Exercises\n\n### Exercise 1 (easy, 5 min)\nSet `answer` to 2 × base.",
            cell_id="ex1",
        ),
        _cell("code", "answer = 2 * base", ["solution", "hide-cell"], "sol1"),
        _cell(
            "markdown",
            "```{admonition} Why\n:class: dropdown\nDouble it.\n```",
            ["solution"],
            "why1",
        ),
        _cell("code", "assert answer == 2 * base", ["exercise-check", "hide-input"], "check1"),
        _cell("markdown", "### Exercise 2 (medium, 10 min)\nThink about it.", cell_id="ex2"),
        _cell("code", "print('an answer in words')", ["solution", "hide-cell"], "sol2"),
    ]
    notebook = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = folder / "00_tiny.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def test_student_edition_of_every_chapter_keeps_checks_and_drops_solutions(tmp_path):
    written = student_edition.write_edition(tmp_path)
    assert [p.name for p in written] == [p.name for p in CHAPTERS]
    for chapter, student_path in zip(CHAPTERS, written, strict=True):
        reference = json.loads(chapter.read_text(encoding="utf-8"))
        student = json.loads(student_path.read_text(encoding="utf-8"))
        tags = [c.get("metadata", {}).get("tags", []) for c in student["cells"]]
        assert not any("solution" in t for t in tags), chapter.name
        assert "Why (solution" not in json.dumps(student), chapter.name
        checks = [
            c["id"]
            for c in reference["cells"]
            if "exercise-check" in c.get("metadata", {}).get("tags", [])
        ]
        assert checks, f"{chapter.name}: no exercise-check to grade"
        assert checks == [
            c["id"] for c, t in zip(student["cells"], tags, strict=True) if "exercise-check" in t
        ]
        exercises = {n for n in student_edition.exercise_of_cells(reference["cells"]) if n}
        assert sum("answer" in t for t in tags) == len(exercises), chapter.name
        assert student["metadata"]["student_edition"]["chapter"] == chapter.stem


@pytest.mark.timeout(300)
def test_grader_scores_reference_empty_filled_and_tampered_notebooks(tmp_path):
    chapter = _chapter(tmp_path)
    reference = student_edition.grade(chapter, chapters=tmp_path)
    assert [(r.exercise, r.passed) for r in reference.exercises] == [(1, True)]
    assert not reference.chapter_errors

    student = student_edition.student_notebook(json.loads(chapter.read_text()), chapter.stem)
    empty = tmp_path / "empty.ipynb"
    empty.write_text(json.dumps(student))
    result = student_edition.grade(empty, chapters=tmp_path)
    assert [(r.exercise, r.passed) for r in result.exercises] == [(1, False)]
    assert "NameError" in result.exercises[0].error

    answer = next(c for c in student["cells"] if "answer" in c["metadata"].get("tags", []))
    answer["source"] = ["answer = base + base\n"]  # another correct way
    filled = tmp_path / "filled.ipynb"
    filled.write_text(json.dumps(student))
    assert student_edition.grade(filled, chapters=tmp_path).passed == 1

    answer["source"] = ["answer = 3\n"]
    check = next(c for c in student["cells"] if c["id"] == "check1")
    check["source"] = ["assert True  # the student's edit of the check\n"]
    tampered = tmp_path / "tampered.ipynb"
    tampered.write_text(json.dumps(student))
    result = student_edition.grade(tampered, chapters=tmp_path)
    assert result.passed == 0 and "AssertionError" in result.exercises[0].error


def test_grader_names_the_argument_when_the_notebook_is_no_chapter(tmp_path):
    (tmp_path / "chapters").mkdir()
    stray = tmp_path / "my_homework.ipynb"
    stray.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    with pytest.raises(SystemExit, match=r"NOTEBOOK .* is not a chapter's notebook"):
        student_edition.grade(stray, chapters=tmp_path / "chapters")


@pytest.mark.timeout(400)
def test_grader_on_a_real_chapter_passes_the_solutions_and_fails_the_blank_edition(tmp_path):
    chapter = ROOT / "chapters" / "09_final_considerations.ipynb"
    solved = student_edition.grade(chapter)
    assert solved.exercises and solved.passed == len(solved.exercises), solved.summary()
    assert not solved.chapter_errors, solved.summary()
    blank = tmp_path / chapter.name
    notebook = student_edition.student_notebook(json.loads(chapter.read_text()), chapter.stem)
    blank.write_text(json.dumps(notebook))
    result = student_edition.grade(blank)
    assert result.passed == 0, result.summary()


def test_make_student_writes_every_chapter_and_the_figures(tmp_path, capsys):
    assert student_edition.main(["write", "--out", str(tmp_path)]) == 0
    assert f"{len(CHAPTERS)} chapters written" in capsys.readouterr().out
    assert len(list((tmp_path / "chapters").glob("*.ipynb"))) == len(CHAPTERS)
    assert list((tmp_path / "book" / "figures").glob("*.svg"))  # the diagrams' relative path
