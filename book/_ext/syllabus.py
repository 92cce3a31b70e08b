"""The ``syllabus-times`` directive: reading and exercise time per chapter, read from the chapters.

In a MyST page::

    ```{syllabus-times}
    ```

gives one row per chapter: its words of prose (solutions left out) and the reading time at
:data:`WORDS_PER_MINUTE`, its exercises by difficulty with the minutes each is marked with
(``### Exercise N (medium, 15 min)``), and the median time the evidence run took to execute it.
Nothing is typed by hand, so the table stays true when a chapter changes.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "scripts") not in sys.path:
    sys.path.insert(0, str(ROOT / "scripts"))

from student_edition import EXERCISE  # noqa: E402  (the grader's definition of an exercise)

#: A careful reading speed for technical prose with formulas and code.
WORDS_PER_MINUTE = 150
COLUMNS = ("chapter", "words", "reading", "exercises", "exercise time", "runs in")


def chapter_times(path: Path, ledger: dict) -> dict:
    """Words, reading minutes, exercises and run time of one chapter notebook."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    prose = [
        "".join(c["source"])
        for c in cells
        if c["cell_type"] == "markdown" and "solution" not in c.get("metadata", {}).get("tags", [])
    ]
    words = sum(len(re.findall(r"[A-Za-z0-9]+", text)) for text in prose)
    exercises = [m for text in prose for m in EXERCISE.findall(text)]
    by_level = {level: sum(1 for _, lv, _ in exercises if lv == level) for level in
                ("easy", "medium", "hard")}  # fmt: skip
    seconds = ledger.get("chapters", {}).get(path.stem, {}).get("seconds", {})
    times = list(seconds.values()) if isinstance(seconds, dict) else list(seconds or [])
    title = next((t for t in prose if t.startswith("# ")), path.stem).splitlines()[0][2:]
    return {
        "stem": path.stem,
        "title": title.strip(),
        "words": words,
        "reading": math.ceil(words / WORDS_PER_MINUTE),
        "exercises": by_level,
        "exercise_minutes": sum(int(minutes) for *_, minutes in exercises),
        "run_seconds": statistics.median(times) if times else None,
    }


def _cell(content: nodes.Node | str) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=content)
    return entry


class SyllabusTimes(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        ledger_path = ROOT / "evidence" / "ledger.json"
        ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
        rows = [chapter_times(p, ledger) for p in sorted((ROOT / "chapters").glob("[0-9]*.ipynb"))]
        for path in (ROOT / "chapters").glob("[0-9]*.ipynb"):
            self.env.note_dependency(str(path))
        table, group = nodes.table(), nodes.tgroup(cols=len(COLUMNS))
        table += group
        for width in (34, 8, 10, 22, 12, 10):
            group += nodes.colspec(colwidth=width)
        head, body = nodes.thead(), nodes.tbody()
        header = nodes.row()
        for name in COLUMNS:
            header += _cell(name)
        head += header
        for row in rows:
            line = nodes.row()
            link = nodes.paragraph()
            ref = nodes.reference("", f"{row['stem'][:2]} {row['title']}", internal=True,
                                  refuri=f"../chapters/{row['stem']}.html")  # fmt: skip
            link += ref
            levels = ", ".join(f"{n} {lv}" for lv, n in row["exercises"].items() if n)
            run = "—" if row["run_seconds"] is None else f"{row['run_seconds']:.0f} s"
            for value in (link, f"{row['words']:,}", f"{row['reading']} min", levels or "—",
                          f"{row['exercise_minutes']} min", run):  # fmt: skip
                line += _cell(value)
            body += line
        total = nodes.row()
        for value in ("all chapters", f"{sum(r['words'] for r in rows):,}",
                      f"{sum(r['reading'] for r in rows)} min",
                      f"{sum(sum(r['exercises'].values()) for r in rows)} exercises",
                      f"{sum(r['exercise_minutes'] for r in rows)} min", ""):  # fmt: skip
            total += _cell(value)
        body += total
        group += head
        group += body
        return [table]


def setup(app):
    app.add_directive("syllabus-times", SyllabusTimes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
