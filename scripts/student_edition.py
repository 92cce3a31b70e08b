"""The student edition of the chapters, and the autograder that checks a student's notebook.

    python scripts/student_edition.py write [--out _build/student]
    python scripts/student_edition.py grade NOTEBOOK [--report _build/grade/NAME.json]

In a chapter, each exercise is a ``### Exercise N (difficulty, M min)`` heading and statement,
then its solution (cells tagged ``solution``: the code, and a dropdown that explains why), then,
for exercises with a checkable answer, a check (a cell tagged ``exercise-check``) that asserts
on what the student is asked to define.

``write`` copies every chapter with the solutions removed: each exercise's solution code becomes
one empty answer cell, its explanation disappears, the checks stay. ``grade`` takes a student's
filled-in notebook, puts the chapter's own checks back in place of whatever the student's copy
holds (a student cannot grade themself by editing a check), executes it in a fresh kernel from
the chapters' folder and reports, exercise by exercise, whether its check passed. The exit status
is 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
EXERCISE = re.compile(r"^### Exercise (\d+) \((easy|medium|hard), (\d+) min\)\s*$", re.M)
EDITION_KEY = "student_edition"


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def exercise_of_cells(cells: list[dict]) -> list[int | None]:
    """The exercise number each cell belongs to (``None`` before the first exercise)."""
    current, numbers = None, []
    for cell in cells:
        if cell["cell_type"] == "markdown":
            match = EXERCISE.search(_source(cell))
            if match:
                current = int(match.group(1))
        numbers.append(current)
    return numbers


def _answer_cell(number: int, cell_id: str) -> dict:
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": f"answer-{cell_id}"[:64],
        "metadata": {"tags": ["answer"]},
        "outputs": [],
        "source": [f"# Exercise {number}: your answer here.\n"],
    }


def student_notebook(notebook: dict, chapter: str) -> dict:
    """``notebook`` with every solution removed and an empty answer cell in its place.

    Args:
        notebook: a chapter notebook (nbformat 4 JSON).
        chapter: the chapter's file stem, recorded so that the grader finds its checks.

    Returns:
        A new notebook: outputs cleared, ``solution`` cells gone (the first code cell of each
        exercise's solution becomes an ``answer`` cell), checks kept.
    """
    student = copy.deepcopy(notebook)
    cells, numbers, answered = [], exercise_of_cells(student["cells"]), set()
    for cell, number in zip(student["cells"], numbers, strict=True):
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if "solution" not in _tags(cell):
            cells.append(cell)
        elif cell["cell_type"] == "code" and number is not None and number not in answered:
            answered.add(number)
            cells.append(_answer_cell(number, cell.get("id", str(number))))
    intro = {
        "cell_type": "markdown",
        "id": "student-edition-note",
        "metadata": {},
        "source": [
            "```{note}\n",
            "**Student edition.** The solutions are removed: write your answer in each empty\n",
            "*answer* cell, and run the check below it. Your teacher grades the notebook with\n",
            f"`make grade NOTEBOOK=path/to/{chapter}.ipynb`, which puts the original checks\n",
            "back and runs the whole notebook in a fresh kernel.\n",
            "```\n",
        ],
    }
    student["cells"] = [cells[0], intro, *cells[1:]]
    student.setdefault("metadata", {})[EDITION_KEY] = {"chapter": chapter}
    return student


def write_edition(out: Path, chapters: Path = CHAPTERS) -> list[Path]:
    """Write the student edition of every chapter under ``out/chapters`` (figures beside it)."""
    written = []
    (out / "chapters").mkdir(parents=True, exist_ok=True)
    for path in sorted(chapters.glob("[0-9][0-9]_*.ipynb")):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        target = out / "chapters" / path.name
        student = student_notebook(notebook, path.stem)
        target.write_text(json.dumps(student, indent=1, ensure_ascii=False) + "\n", "utf-8")
        written.append(target)
    figures = chapters.parent / "book" / "figures"
    if figures.is_dir():  # the chapters' diagrams, at the same relative path
        shutil.copytree(figures, out / "book" / "figures", dirs_exist_ok=True)
    return written


@dataclass
class ExerciseResult:
    """One exercise's check: passed or not, and the error it raised."""

    exercise: int
    passed: bool
    error: str = ""


@dataclass
class GradeReport:
    """What the grader found in one notebook."""

    notebook: str
    chapter: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    chapter_errors: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(result.passed for result in self.exercises)

    def summary(self) -> str:
        lines = [f"{self.notebook} (chapter {self.chapter})"]
        for result in self.exercises:
            mark = "passed" if result.passed else f"FAILED  {result.error}"
            lines.append(f"  exercise {result.exercise:>2}: {mark}")
        for error in self.chapter_errors:
            lines.append(f"  note: a cell outside the exercises raised: {error}")
        lines.append(f"  score: {self.passed} of {len(self.exercises)} checked exercises")
        return "\n".join(lines)


def _chapter_of(student: dict, path: Path, chapters: Path) -> Path:
    stem = student.get("metadata", {}).get(EDITION_KEY, {}).get("chapter") or path.stem
    chapter = chapters / f"{stem}.ipynb"
    if not chapter.exists():
        raise SystemExit(
            f"NOTEBOOK {path} is not a chapter's notebook: no chapters/{stem}.ipynb. Grade a "
            "notebook written by `make student` (it records its chapter) or named like a chapter."
        )
    return chapter


def _error_text(cell: dict) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"[:300]
    return None


def grade(path: Path, chapters: Path = CHAPTERS, timeout: int = 600) -> GradeReport:
    """Execute a student's notebook with the chapter's checks and report each exercise.

    Args:
        path: the student's notebook.
        chapters: the folder of the reference chapters (their checks are the grader's).
        timeout: seconds allowed per cell.

    Returns:
        The :class:`GradeReport`.
    """
    import nbformat
    from nbclient import NotebookClient

    student = json.loads(path.read_text(encoding="utf-8"))
    chapter_path = _chapter_of(student, path, chapters)
    reference = json.loads(chapter_path.read_text(encoding="utf-8"))
    checks = {
        cell["id"]: (cell, number)
        for cell, number in zip(
            reference["cells"], exercise_of_cells(reference["cells"]), strict=True
        )
        if "exercise-check" in _tags(cell)
    }
    present = set()
    for cell in student["cells"]:
        if cell.get("id") in checks:  # the chapter's own check, whatever the student's copy says
            cell["source"] = copy.deepcopy(checks[cell["id"]][0]["source"])
            present.add(cell["id"])
    notebook = nbformat.reads(json.dumps(student), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(chapters)}},
    )
    client.execute()
    executed = json.loads(nbformat.writes(notebook))

    report = GradeReport(notebook=str(path), chapter=chapter_path.stem)
    results: dict[int, ExerciseResult] = {}
    for cell in executed["cells"]:
        error = _error_text(cell)
        if cell.get("id") in checks:
            number = checks[cell["id"]][1]
            previous = results.get(number, ExerciseResult(number, True))
            results[number] = ExerciseResult(
                number, previous.passed and error is None, previous.error or (error or "")
            )
        elif error and "answer" not in _tags(cell):
            report.chapter_errors.append(error)
    for cell_id, (_, number) in checks.items():
        if cell_id not in present:
            results[number] = ExerciseResult(number, False, "the exercise's check cell is missing")
    report.exercises = [results[number] for number in sorted(results)]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write the student edition")
    write.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    check = commands.add_parser("grade", help="grade a student's notebook")
    check.add_argument("notebook", type=Path)
    check.add_argument("--report", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.command == "write":
        written = write_edition(args.out)
        print(f"student edition: {len(written)} chapters written to {args.out / 'chapters'}")
        return 0
    if not args.notebook.exists():
        parser.error(f"NOTEBOOK {args.notebook} does not exist")
    report = grade(args.notebook.resolve())
    print(report.summary())
    target = args.report or ROOT / "_build" / "grade" / f"{args.notebook.stem}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = asdict(report) | {"passed": report.passed, "checked": len(report.exercises)}
    target.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"report: {target}")
    return 0 if report.exercises and report.passed == len(report.exercises) else 1


if __name__ == "__main__":
    sys.exit(main())
