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
from pathlib import Path

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


class LedgerDirective(SphinxDirective):
    """A table of claims from the evidence ledger."""

    option_spec = {"verdict": directives.unchanged, "chapter": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        ledger = evidence.load_ledger()
        self.env.note_dependency(str(evidence.LEDGER_PATH))
        verdict = self.options.get("verdict")
        chapter = self.options.get("chapter")
        chosen = [
            (claim_id, entry)
            for claim_id, entry in ledger.get("claims", {}).items()
            if (verdict is None or entry.get("supports") == verdict)
            and (chapter is None or entry["chapter"].startswith(chapter))
        ]
        if not chosen:
            what = f"verdict {verdict}" if verdict else f"chapter {chapter}" if chapter else "any"
            message = f"the evidence ledger has no claim for {what}"
            return [self.state.document.reporter.warning(message, line=self.lineno)]
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
