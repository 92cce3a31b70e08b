"""The evidence behind the chapters: seeds from BOOK_SEED, a fresh ledger, claims that held.

`make evidence` runs every chapter for ten or more values of BOOK_SEED and writes the ledger;
these checks fail when the ledger is stale (the code its records came from has changed), when a
chapter asserts a claim that failed on some seed of the run, or when a chapter's claims and the
ledger's disagree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from shared_lib.book import evidence

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
LEDGER = evidence.load_ledger()
MINIMUM_SEEDS = 10

# A seed typed into a chapter instead of derived from BOOK_SEED.
LITERAL_SEED = re.compile(
    r"(seed_everything\(\s*\d|manual_seed\(\s*\d|seed\s*=\s*\d|random_state\s*=\s*\d"
    r"|default_rng\(\s*\d|SEEDS?\s*=\s*[\[(]\s*\d|seeds\s*=\s*[\[(]\s*\d|RandomState\(\s*\d)"
)
CLAIM_CALL = re.compile(r"\b(?:claim|observe)\(\s*\n?\s*f?[\"'](ch\d\d\.[^\"']+)[\"']")


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def claim_ids(notebook: Path) -> set[str]:
    return {match for cell in code_cells(notebook) for match in CLAIM_CALL.findall(cell)}


def test_the_evidence_link_points_at_the_ledger():
    link = ROOT / "evidence" / "ledger.json"
    assert link.exists() and link.resolve() == evidence.LEDGER_PATH.resolve()


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem[:2])
def test_no_literal_seed_in_the_chapter(notebook):
    found = [m.group(0) for cell in code_cells(notebook) for m in LITERAL_SEED.finditer(cell)]
    assert not found, f"{notebook.name}: derive seeds with sl.derive_seed(...), found {found}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem[:2])
def test_the_ledger_is_fresh(notebook):
    stale = evidence.stale_chapters([notebook], LEDGER, ROOT)
    assert not stale, (
        f"the evidence ledger is stale for {notebook.stem}: its code changed since the evidence "
        f"run; run `make evidence CHAPTERS={notebook.stem[:2]}` and commit the ledger"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem[:2])
def test_the_chapter_ran_cleanly_on_enough_seeds(notebook):
    entry = LEDGER["chapters"].get(notebook.stem)
    assert entry is not None, f"{notebook.stem} is not in the ledger: run `make evidence`"
    assert len(entry["seeds"]) >= MINIMUM_SEEDS and 0 in entry["seeds"]
    assert sorted(int(s) for s in entry["seconds"]) == sorted(entry["seeds"])
    assert not entry["errors"], f"cells raised in the evidence run: {entry['errors']}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem[:2])
def test_the_chapter_and_the_ledger_name_the_same_claims(notebook):
    in_ledger = {c for c, e in LEDGER["claims"].items() if e["chapter"] == notebook.stem}
    assert claim_ids(notebook) == in_ledger


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda nb: nb.stem[:2])
def test_every_asserted_claim_held_on_every_seed(notebook):
    seeds = {str(s) for s in LEDGER["chapters"].get(notebook.stem, {}).get("seeds", [])}
    for claim_id, entry in LEDGER["claims"].items():
        if entry["chapter"] != notebook.stem:
            continue
        assert set(entry["runs"]) == seeds, f"{claim_id} was not measured on every seed"
        if entry["asserted"]:
            failed = sorted(s for s, run in entry["runs"].items() if not run["held"])
            assert not failed, f"{claim_id} is asserted but failed on seeds {failed}: observe it"
