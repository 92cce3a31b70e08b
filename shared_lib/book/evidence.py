"""The book's evidence: claims measured on many seeds, the ledger that records them, their rates.

A chapter states what it measured with :func:`claim` (asserted: it must hold on every seed) or
:func:`observe` (reported as a rate: it holds on some seeds). Run normally, :func:`claim` is an
assertion with a message that names the claim. Run by the evidence run (``make evidence``, which
sets ``BOOK_EVIDENCE_DIR``), both only record the measurement, so one failing claim does not hide
the others; the run executes every chapter for many values of ``BOOK_SEED`` and writes the ledger
(``evidence/ledger.json``, shipped with the package as ``shared_lib/book/ledger.json``).
Chapters read the ledger back with :func:`rate`, to say in their prose on how many seeds a
measurement held and with what spread.

The ledger remembers a fingerprint of the code each chapter's records came from (its notebook's
code cells, the core of ``shared_lib``, the chapter modules it imports, ``requirements.txt``);
:func:`stale_chapters` names the chapters whose code changed since, and the test suite fails on
them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from shared_lib._validation import check_instance
from shared_lib.training import book_seed

__all__ = [
    "LEDGER_PATH",
    "Rate",
    "claim",
    "code_fingerprint",
    "glue",
    "glue_rate",
    "load_ledger",
    "observe",
    "rate",
    "stale_chapters",
    "wilson_interval",
]

#: Where the ledger lives (``evidence/ledger.json`` at the repository root links to it).
LEDGER_PATH = Path(__file__).with_name("ledger.json")
#: Set by the evidence run: the folder where this execution's measurements are appended.
EVIDENCE_DIR_VARIABLE = "BOOK_EVIDENCE_DIR"
RECORDS_FILE = "records.jsonl"
CLAIM_ID = re.compile(r"^ch(\d\d)\.[a-z0-9][a-z0-9_.\-]*$")
VERDICT = re.compile(r"^C\d+$")


def recording() -> Path | None:
    """The folder this execution records into, or ``None`` outside an evidence run."""
    folder = os.environ.get(EVIDENCE_DIR_VARIABLE, "").strip()
    return Path(folder) if folder else None


def _held(value: object, above: float | None, below: float | None, claim_id: str) -> bool:
    if isinstance(value, bool):
        if above is not None or below is not None:
            raise TypeError(f"{claim_id}: a true/false value takes no bound (above=, below=)")
        return value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(
            f"{claim_id}: value must be a number (with above= or below=) or a bool, "
            f"got {type(value).__name__}; pass e.g. float(tensor) for a tensor"
        )
    if above is None and below is None:
        raise TypeError(f"{claim_id}: a numeric value needs a bound: above=..., below=... or both")
    if math.isnan(value):
        return False
    return (above is None or value > above) and (below is None or value < below)


def _bound(above: float | None, below: float | None) -> str:
    if above is not None and below is not None:
        return f"between {above:g} and {below:g}"
    if above is not None:
        return f"> {above:g}"
    if below is not None:
        return f"< {below:g}"
    return "true"


def _measure(
    claim_id: str,
    statement: str,
    value: float | bool,
    above: float | None,
    below: float | None,
    asserted: bool,
    supports: str | None,
) -> bool:
    check_instance(claim_id, "claim_id", str)
    check_instance(statement, "statement", str)
    if not CLAIM_ID.match(claim_id):
        raise ValueError(
            f"claim_id must look like 'ch06.parity.long' (the chapter's number, then lowercase "
            f"words joined by dots, dashes or underscores); got {claim_id!r}"
        )
    if supports is not None and not VERDICT.match(str(supports)):
        raise ValueError(
            f"supports must name a verdict of the claims page, e.g. 'C7'; got {supports!r}"
        )
    held = _held(value, above, below, claim_id)
    folder = recording()
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "id": claim_id,
            "statement": statement,
            "asserted": asserted,
            "value": value if isinstance(value, bool) else float(value),
            "bound": _bound(above, below),
            "held": held,
            "supports": supports,
            "seed": book_seed(),
        }
        with open(folder / RECORDS_FILE, "a") as records:
            records.write(json.dumps(record) + "\n")
    elif asserted and not held:
        raise AssertionError(
            f"claim {claim_id} did not hold: {statement} (measured {value!r}, needed "
            f"{_bound(above, below)})"
        )
    return held


def claim(
    claim_id: str,
    statement: str,
    value: float | bool,
    *,
    above: float | None = None,
    below: float | None = None,
    supports: str | None = None,
) -> float | bool:
    """Assert a claim that held on every seed of the evidence run, and record it there.

    Args:
        claim_id: ``"chNN.<name>"``, unique in the chapter, e.g. ``"ch06.parity.long"``.
        statement: the claim in words, as the ledger and the claims page show it.
        value: the measurement: a number with a bound, or a bool.
        above: the claim is ``value > above``.
        below: the claim is ``value < below`` (both: strictly between).
        supports: the verdict of the claims page this measurement supports, e.g. ``"C7"``; the
            claims page lists every measurement under its verdict, with its rate.

    Returns:
        ``value``.

    Raises:
        AssertionError: outside the evidence run, the claim does not hold.
        TypeError, ValueError: a malformed id, a number without a bound, a bound on a bool.

    Examples:
        >>> from shared_lib.book.evidence import claim
        >>> claim("ch00.example", "two is more than one", 2.0, above=1.0)
        2.0
    """
    _measure(claim_id, statement, value, above, below, asserted=True, supports=supports)
    return value


def observe(
    claim_id: str,
    statement: str,
    value: float | bool,
    *,
    above: float | None = None,
    below: float | None = None,
    supports: str | None = None,
) -> bool:
    """Record a measurement that holds on some seeds only: never raises, reported as a rate.

    Same arguments as :func:`claim`. Returns whether it held on this run.

    Examples:
        >>> from shared_lib.book.evidence import observe
        >>> observe("ch00.example-rate", "a coin came up heads", False)
        False
    """
    return _measure(claim_id, statement, value, above, below, asserted=False, supports=supports)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a rate (95 % by default); ``(0, 1)`` for no trials.

    Examples:
        >>> from shared_lib.book.evidence import wilson_interval
        >>> low, high = wilson_interval(10, 10)
        >>> round(low, 2), high
        (0.72, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Rate:
    """How often one claim held over the seeds of the evidence run, and the spread of its values.

    Attributes:
        claim_id: the claim.
        statement: the claim in words.
        held: on how many seeds it held (on a seed with several measurements: all of them).
        seeds: on how many seeds it was measured.
        values: every numeric value measured, over all seeds (empty for a true/false claim).
        asserted: whether the chapter asserts it.
    """

    claim_id: str
    statement: str
    held: int
    seeds: int
    values: tuple[float, ...]
    asserted: bool

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % Wilson interval of the rate."""
        return wilson_interval(self.held, self.seeds)

    def spread(self, fmt: str = ".3f") -> str:
        """``"min–max (median m)"`` of the values, e.g. ``"0.46–1.00 (median 0.99)"``."""
        if not self.values:
            return "no numeric values"
        low, mid, high = min(self.values), statistics.median(self.values), max(self.values)
        return f"{low:{fmt}}–{high:{fmt}} (median {mid:{fmt}})"

    def __str__(self) -> str:
        if self.seeds == 0:
            return "not yet measured by the evidence run"
        low, high = self.interval
        if self.held == self.seeds:
            return f"held on all {self.seeds} seeds (95 % interval for the rate {low:.0%}–100%)"
        return (
            f"held on {self.held} of {self.seeds} seeds (95 % interval for the rate "
            f"{low:.0%}–{high:.0%})"
        )


def load_ledger(path: str | Path | None = None) -> dict:
    """The ledger as a dict (an empty one when the file does not exist yet)."""
    path = Path(path) if path is not None else LEDGER_PATH
    if not path.exists():
        return {"format": 1, "chapters": {}, "claims": {}}
    return json.loads(path.read_text())


def rate(claim_id: str, ledger: Mapping | None = None) -> Rate:
    """How often ``claim_id`` held in the evidence run (read from the ledger).

    Raises:
        LookupError: outside an evidence run, the ledger has no such claim (run
            ``make evidence CHAPTERS=NN``).
    """
    ledger = load_ledger() if ledger is None else ledger
    entry = ledger.get("claims", {}).get(claim_id)
    if entry is None:
        if recording() is not None:
            return Rate(claim_id, "", 0, 0, (), False)
        match = CLAIM_ID.match(claim_id)
        chapter = match.group(1) if match else "NN"
        raise LookupError(
            f"the evidence ledger has no claim {claim_id!r}: run `make evidence CHAPTERS={chapter}`"
        )
    runs = entry["runs"].values()
    values = tuple(
        float(v) for run in runs for v in run["values"] if not isinstance(v, bool) and v is not None
    )
    return Rate(
        claim_id,
        entry["statement"],
        held=sum(1 for run in runs if run["held"]),
        seeds=len(entry["runs"]),
        values=values,
        asserted=entry["asserted"],
    )


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _normalised_python(source: str) -> str:
    """The code without comments, docstrings or layout: edits to those keep the fingerprint."""
    try:
        return ast.dump(_strip_docstrings(ast.parse(source)))
    except SyntaxError:  # a notebook cell with IPython magics: keep it as written
        return source


def _notebook_code(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return [
        "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for cell in cells
        if cell["cell_type"] == "code"
    ]


BOOK_IMPORT = re.compile(r"shared_lib\.book(?:\.|\s+import\s+)(ch\d\d_\w+)|from \.(ch\d\d_\w+)")


def _book_modules(sources: Iterable[str], book: Path) -> set[Path]:
    """The chapter modules of ``shared_lib/book`` these sources import, and what they import."""
    found: set[Path] = set()
    pending = [name for source in sources for pair in BOOK_IMPORT.findall(source) for name in pair]
    while pending:
        name = pending.pop()
        path = book / f"{name}.py"
        if name and path.exists() and path not in found:
            found.add(path)
            text = path.read_text()
            pending.extend(name for pair in BOOK_IMPORT.findall(text) for name in pair)
    return found


def code_fingerprint(notebook: str | Path, root: str | Path | None = None) -> str:
    """A hash of what a chapter's measurements depend on.

    That is the notebook's code cells, the core of ``shared_lib`` (everything outside
    ``shared_lib/book`` and the book's shared modules such as this one), the chapter modules of
    ``shared_lib/book`` the notebook imports (and what they import), and the pinned requirements.
    Prose, comments, docstrings and formatting are left out, so editing them keeps the ledger
    fresh; another chapter's module is left out, so editing it does not make this chapter stale.

    Args:
        notebook: the chapter's ``.ipynb``.
        root: the repository root (default: the one holding this package).
    """
    notebook = Path(notebook)
    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    book = root / "shared_lib" / "book"
    cells = _notebook_code(notebook)
    chapter_modules = _book_modules(cells, book)
    digest = hashlib.sha256()
    for cell in cells:
        digest.update(_normalised_python(cell).encode())
        digest.update(b"\0")
    for module in sorted((root / "shared_lib").rglob("*.py")):
        is_chapter_module = module.parent == book and re.match(r"ch\d\d_", module.name)
        if is_chapter_module and module not in chapter_modules:
            continue
        digest.update(str(module.relative_to(root)).encode())
        digest.update(_normalised_python(module.read_text()).encode())
    requirements = root / "requirements.txt"
    if requirements.exists():
        digest.update(requirements.read_bytes())
    return digest.hexdigest()


def stale_chapters(
    notebooks: Iterable[str | Path], ledger: Mapping | None = None, root: str | Path | None = None
) -> list[str]:
    """The chapters (notebook stems) whose ledger entry is missing or from other code."""
    ledger = load_ledger() if ledger is None else ledger
    stale = []
    for notebook in notebooks:
        stem = Path(notebook).stem
        entry = ledger.get("chapters", {}).get(stem)
        if entry is None or entry.get("fingerprint") != code_fingerprint(notebook, root):
            stale.append(stem)
    return stale


class _Text(str):
    """A string whose text/plain form is itself (no quotes) when glued into prose."""

    def __repr__(self) -> str:
        return str(self)


def glue(name: str, value: object) -> object:
    """Store ``value`` for the chapter's prose, ``{glue:text}`name```; the value is returned.

    Strings are glued without quotes; numbers keep their type, so the prose can format them
    (``{glue:text}`name:.2f```). Outside a myst-nb build (Colab, a plain Jupyter) nothing is
    displayed either way.

    Examples:
        >>> from shared_lib.book.evidence import glue
        >>> glue("answer", 42)
        42
    """
    check_instance(name, "name", str)
    try:
        from IPython import get_ipython
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab: the prose shows the role as written, the number is printed
        return value
    if get_ipython() is not None:
        myst_glue(name, _Text(value) if isinstance(value, str) else value, display=False)
    return value


def glue_rate(name: str, claim_id: str, fmt: str = ".3f", ledger: Mapping | None = None) -> Rate:
    """Glue a claim's rate from the ledger for the prose: ``name`` and ``name_spread``.

    ``{glue:text}`name``` reads e.g. "held on 7 of 10 seeds (95 % interval for the rate 40–89 %)",
    ``{glue:text}`name_spread``` e.g. "0.46–1.00 (median 0.99)".
    """
    result = rate(claim_id, ledger)
    glue(name, str(result))
    glue(f"{name}_spread", result.spread(fmt))
    return result
