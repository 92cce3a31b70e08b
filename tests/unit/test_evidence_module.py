"""book.evidence: claims, recording, rates and fingerprints; derive_seed and BOOK_SEED."""

from __future__ import annotations

import json

import pytest

import shared_lib as sl
from shared_lib.book import evidence
from shared_lib.book.evidence import claim, observe


def test_claim_raises_with_its_id_when_it_does_not_hold(monkeypatch):
    monkeypatch.delenv(evidence.EVIDENCE_DIR_VARIABLE, raising=False)
    assert claim("ch00.ok", "holds", 0.5, above=0.1, below=0.9) == 0.5
    with pytest.raises(AssertionError, match=r"ch00\.bad.*measured 0\.05.*> 0\.1"):
        claim("ch00.bad", "does not hold", 0.05, above=0.1)
    with pytest.raises(AssertionError, match=r"ch00\.nan"):
        claim("ch00.nan", "nan never holds", float("nan"), below=1.0)
    assert observe("ch00.rate", "reported, never raises", 0.05, above=0.1) is False


def test_malformed_claims_name_the_problem():
    with pytest.raises(ValueError, match="claim_id"):
        claim("parity", "no chapter", True)
    with pytest.raises(TypeError, match="needs a bound"):
        claim("ch00.x", "no bound", 1.0)
    with pytest.raises(TypeError, match="takes no bound"):
        claim("ch00.x", "bool with bound", True, above=0)
    with pytest.raises(TypeError, match="float"):
        claim("ch00.x", "a list", [1.0], above=0)


def test_the_evidence_run_records_instead_of_raising(monkeypatch, tmp_path):
    monkeypatch.setenv(evidence.EVIDENCE_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setenv("BOOK_SEED", "7")
    claim("ch00.fails", "recorded, not raised", 0.0, above=1.0)
    observe("ch00.holds", "a rate", True)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [(r["id"], r["held"], r["asserted"], r["seed"]) for r in records] == [
        ("ch00.fails", False, True, 7),
        ("ch00.holds", True, False, 7),
    ]
    assert records[0]["bound"] == "> 1"


def test_rates_come_from_the_ledger(monkeypatch):
    monkeypatch.delenv(evidence.EVIDENCE_DIR_VARIABLE, raising=False)
    ledger = {"claims": {"ch00.x": {"statement": "s", "asserted": False, "chapter": "00", "runs": {
        str(s): {"values": [s / 10], "held": s < 7} for s in range(10)}}}}  # fmt: skip
    result = evidence.rate("ch00.x", ledger)
    assert (result.held, result.seeds) == (7, 10)
    assert str(result).startswith("held on 7 of 10 seeds")
    assert result.spread(".2f") == "0.00–0.90 (median 0.45)"
    low, high = result.interval
    assert 0.35 < low < 0.7 < high < 0.95
    with pytest.raises(LookupError, match="make evidence CHAPTERS=00"):
        evidence.rate("ch00.missing", ledger)


def test_the_wilson_interval_is_the_textbook_one():
    low, high = evidence.wilson_interval(5, 10)
    assert abs(low - 0.2366) < 1e-3 and abs(high - 0.7634) < 1e-3
    assert evidence.wilson_interval(0, 0) == (0.0, 1.0)


def test_the_fingerprint_ignores_prose_and_sees_code(tmp_path):
    (tmp_path / "shared_lib").mkdir()
    module = tmp_path / "shared_lib" / "m.py"
    notebook = tmp_path / "nb.ipynb"

    def write(code: str, markdown: str = "prose") -> str:
        notebook.write_text(json.dumps({"cells": [
            {"cell_type": "markdown", "source": markdown},
            {"cell_type": "code", "source": code}]}))  # fmt: skip
        return evidence.code_fingerprint(notebook, tmp_path)

    module.write_text('def f():\n    """Doc."""\n    return 1  # comment\n')
    first = write("x = f()")
    assert write("x = f()", markdown="other prose") == first
    assert write("x  =  f()  # a comment") == first
    module.write_text('def f():\n    """Other doc."""\n\n    return 1\n')
    assert write("x = f()") == first
    module.write_text("def f():\n    return 2\n")
    assert write("x = f()") != first
    assert write("%pip install x\nx = f()") != write("x = f()")


def test_derive_seed_is_stable_and_follows_book_seed(monkeypatch):
    monkeypatch.delenv("BOOK_SEED", raising=False)
    assert sl.book_seed() == 0
    at_zero = sl.derive_seed("parity", 1)
    assert at_zero == sl.derive_seed("parity", 1, base=0)
    # a stable hash, not Python's salted one: the same number in every process
    assert at_zero == 2060072052
    monkeypatch.setenv("BOOK_SEED", "3")
    assert sl.book_seed() == 3 and sl.derive_seed("parity", 1) != at_zero
    assert len({sl.derive_seed("x", i) for i in range(100)}) == 100


@pytest.mark.parametrize("text", ["-1", "seven", "1.5"])
def test_a_bad_book_seed_names_the_variable(monkeypatch, text):
    monkeypatch.setenv("BOOK_SEED", text)
    with pytest.raises(ValueError, match="BOOK_SEED"):
        sl.book_seed()


def test_derive_seed_rejects_what_is_not_a_label():
    with pytest.raises(TypeError, match="at least one label"):
        sl.derive_seed()
    with pytest.raises(TypeError, match=r"labels\[1\]"):
        sl.derive_seed("x", 1.5)
    with pytest.raises(ValueError, match="base"):
        sl.derive_seed("x", base=-1)


def test_the_fingerprint_follows_the_chapter_modules_it_imports(tmp_path):
    book = tmp_path / "shared_lib" / "book"
    book.mkdir(parents=True)
    (tmp_path / "shared_lib" / "core.py").write_text("X = 1\n")
    (book / "ch04_a.py").write_text("Y = 1\n")
    (book / "ch05_b.py").write_text("from shared_lib.book.ch04_a import Y\n")
    (book / "ch06_c.py").write_text("Z = 1\n")
    notebook = tmp_path / "05_b.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "code", "source": "from shared_lib.book.ch05_b import Y"}]}))  # fmt: skip
    first = evidence.code_fingerprint(notebook, tmp_path)
    (book / "ch06_c.py").write_text("Z = 2\n")  # another chapter's module
    assert evidence.code_fingerprint(notebook, tmp_path) == first
    (book / "ch04_a.py").write_text("Y = 2\n")  # imported through ch05_b
    second = evidence.code_fingerprint(notebook, tmp_path)
    assert second != first
    (tmp_path / "shared_lib" / "core.py").write_text("X = 2\n")  # the core
    assert evidence.code_fingerprint(notebook, tmp_path) != second
