"""The ``ledger`` directive: tables of the evidence run's claims, read from the ledger.

In a MyST page::

    ```{ledger}
    :verdict: C7
    ```

lists every measurement that supports verdict C7 (``claim(..., supports="C7")`` in a chapter);
``:chapter: 06`` lists one chapter's, and no option lists them all. Each row gives the claim, the
chapter, whether the chapter asserts it or reports it as a rate, on how many seeds of the
evidence run it held (with the 95 % interval of the rate) and the spread of its values.
"""

from __future__ import annotations

import sys
import statistics
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from shared_lib.book import evidence  # noqa: E402

COLUMNS = ("claim", "chapter", "in the chapter", "held", "values over the seeds")
WIDTHS = (40, 8, 12, 22, 18)


def _cell(text: str) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph(text=text)
    return entry


def _row(texts: list[str]) -> nodes.row:
    row = nodes.row()
    for text in texts:
        row += _cell(text)
    return row


def summary_text(ledger: dict) -> str:
    """One paragraph: how many measurements, asserted or rates, on how many seeds."""
    rates = [evidence.rate(claim_id, ledger) for claim_id in ledger.get("claims", {})]
    seeds = sorted({len(entry["seeds"]) for entry in ledger.get("chapters", {}).values()})
    asserted = [r for r in rates if r.asserted]
    reported = [r for r in rates if not r.asserted]
    always = [r for r in reported if r.held == r.seeds]
    text = (
        f"The ledger holds {len(rates)} measurements from {len(ledger.get('chapters', {}))} "
        f"chapter(s), each run on {' or '.join(map(str, seeds))} values of BOOK_SEED. "
        f"{len(asserted)} are asserted by their chapter, and "
        f"{sum(r.held == r.seeds for r in asserted)} of them held on every seed. "
        f"{len(reported)} are reported as rates"
    )
    if reported:
        sometimes = [r for r in reported if r.held < r.seeds]
        text += f": {len(always)} of them held on every seed anyway"
        if sometimes:
            low = min(r.held / r.seeds for r in sometimes)
            high = max(r.held / r.seeds for r in sometimes)
            text += f", the other {len(sometimes)} on {low:.0%} to {high:.0%} of the seeds"
    return text + "."


def times_table(ledger: dict) -> nodes.table:
    """Per chapter: seeds run and the median and longest execution time."""
    table = nodes.table(classes=["ledger-table"])
    group = nodes.tgroup(cols=4)
    table += group
    for width in (30, 10, 15, 15):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    head += _row(["chapter", "seeds", "median time (s)", "longest (s)"])
    group += head
    body = nodes.tbody()
    for stem, entry in ledger.get("chapters", {}).items():
        seconds = list(entry["seconds"].values())
        body += _row([stem, str(len(entry["seeds"])), f"{statistics.median(seconds):.1f}",
                      f"{max(seconds):.1f}"])  # fmt: skip
    group += body
    return table


class LedgerDirective(SphinxDirective):
    """A table of claims from the evidence ledger."""

    option_spec: ClassVar[dict] = {
        "verdict": directives.unchanged,
        "chapter": directives.unchanged,
        "summary": directives.flag,
        "times": directives.flag,
    }

    def run(self) -> list[nodes.Node]:
        ledger = evidence.load_ledger()
        self.env.note_dependency(str(evidence.LEDGER_PATH))
        if "summary" in self.options:
            return [nodes.paragraph(text=summary_text(ledger))]
        if "times" in self.options:
            return [times_table(ledger)]
        verdict = self.options.get("verdict")
        chapter = self.options.get("chapter")
        chosen = [
            (claim_id, entry)
            for claim_id, entry in ledger.get("claims", {}).items()
            if (verdict is None or entry.get("supports") == verdict)
            and (chapter is None or entry["chapter"].startswith(chapter))
        ]
        if not chosen:
            what = f"verdict {verdict}" if verdict else f"chapter {chapter}" if chapter else "book"
            text = (
                f"The ledger lists no seed-dependent measurement for {what}: its evidence is "
                "deterministic (counts, shapes, exact identities, asserted on every build) or cited."
            )
            return [nodes.paragraph(text=text)]
        table = nodes.table(classes=["ledger-table"])
        group = nodes.tgroup(cols=len(COLUMNS))
        table += group
        for width in WIDTHS:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        head += _row(list(COLUMNS))
        group += head
        body = nodes.tbody()
        for claim_id, entry in chosen:
            result = evidence.rate(claim_id, ledger)
            low, high = result.interval
            held = f"{result.held} of {result.seeds} seeds ({low:.0%}–{high:.0%})"
            body += _row([
                f"{entry['statement']} ({entry['bound']}) [{claim_id}]",
                entry["chapter"][:2],
                "asserted" if entry["asserted"] else "a rate",
                held,
                result.spread(".3g") if result.values else "true/false",
            ])  # fmt: skip
        group += body
        return [table]


def setup(app):
    app.add_directive("ledger", LedgerDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
