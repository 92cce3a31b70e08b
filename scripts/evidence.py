"""The evidence run: every chapter, executed for many values of BOOK_SEED, into the ledger.

    python scripts/evidence.py                      # all chapters, seeds 0-9, two at a time
    python scripts/evidence.py --chapters 06 07     # only these chapters (others kept as they are)
    python scripts/evidence.py --seeds 0-19 --jobs 2
    python scripts/evidence.py --check              # is the ledger fresh? (no execution)

Each (chapter, seed) runs in a fresh kernel with BOOK_SEED set and BOOK_EVIDENCE_DIR pointing to a
folder of its own, where `claim` and `observe` append their measurements instead of raising. The
ledger (shared_lib/book/ledger.json; evidence/ledger.json links to it) gets, per chapter, the seeds,
the code fingerprint, the run times and any cell that raised, and per claim its statement, whether
the chapter asserts it, and for each seed the values measured and whether it held.

Exit status 1 when a cell raised, or when an asserted claim failed on some seed: the chapter must
then report that claim as a rate (`observe`) instead of asserting it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_lib.book import evidence  # noqa: E402

CHAPTERS = ROOT / "chapters"


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            first, last = part.split("-")
            seeds.extend(range(int(first), int(last) + 1))
        elif part:
            seeds.append(int(part))
    return sorted(set(seeds))


def notebooks(prefixes: list[str] | None) -> list[Path]:
    found = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))
    if prefixes:
        found = [nb for nb in found if any(nb.name.startswith(p) for p in prefixes)]
        if not found:
            raise SystemExit(f"no chapter matches {prefixes}; chapters start with 01 ... 09")
    return found


def execute(notebook: Path, seed: int, folder: Path, timeout: int) -> dict:
    """Run one chapter at one base seed; return its records, errors and time."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["BOOK_SEED"] = str(seed)
    os.environ[evidence.EVIDENCE_DIR_VARIABLE] = str(folder)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(notebook.parent)}},
        extra_arguments=["--log-level=ERROR"],  # not ipykernel's warning about TCP per kernel
    )  # fmt: skip
    start = time.perf_counter()
    errors = []
    try:
        client.execute()
    except CellExecutionError as error:  # pragma: no cover - allow_errors keeps going
        errors.append(str(error)[:500])
    seconds = time.perf_counter() - start
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                errors.append(f"cell {index}: {output['ename']}: {output['evalue']}"[:500])
    records_file = folder / evidence.RECORDS_FILE
    records = [json.loads(line) for line in records_file.read_text().splitlines()] if (
        records_file.exists()) else []  # fmt: skip
    return {"chapter": notebook.stem, "seed": seed, "seconds": seconds, "errors": errors,
            "records": records}  # fmt: skip


def merge(ledger: dict, results: list[dict], seeds: list[int], stems: list[str]) -> dict:
    chapters = ledger.setdefault("chapters", {})
    claims = ledger.setdefault("claims", {})
    for stem in stems:  # a chapter that ran is replaced as a whole
        for claim_id in [c for c, entry in claims.items() if entry["chapter"] == stem]:
            del claims[claim_id]
        chapters[stem] = {
            "fingerprint": evidence.code_fingerprint(CHAPTERS / f"{stem}.ipynb", ROOT),
            "seeds": seeds,
            "seconds": {},
            "errors": {},
            "run_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        }
    for result in sorted(results, key=lambda r: (r["chapter"], r["seed"])):
        stem, seed = result["chapter"], str(result["seed"])
        chapters[stem]["seconds"][seed] = round(result["seconds"], 1)
        if result["errors"]:
            chapters[stem]["errors"][seed] = result["errors"]
        for record in result["records"]:
            entry = claims.setdefault(record["id"], {
                "chapter": stem, "statement": record["statement"],
                "asserted": record["asserted"], "bound": record["bound"],
                "supports": record.get("supports"), "runs": {},
            })  # fmt: skip
            entry["asserted"] = entry["asserted"] or record["asserted"]
            run = entry["runs"].setdefault(seed, {"values": [], "held": True})
            run["values"].append(record["value"])
            run["held"] = run["held"] and record["held"]
    ledger["claims"] = dict(sorted(claims.items()))
    ledger["chapters"] = dict(sorted(chapters.items()))
    ledger["format"] = 1
    return ledger


def dump(ledger: dict) -> str:
    """The ledger as JSON with one line per chapter and per (claim, seed): small, readable diffs."""
    lines = ["{", f' "format": {ledger["format"]},', ' "chapters": {']
    chapters = list(ledger["chapters"].items())
    for i, (stem, entry) in enumerate(chapters):
        comma = "," if i < len(chapters) - 1 else ""
        lines.append(f"  {json.dumps(stem)}: {json.dumps(entry, ensure_ascii=False)}{comma}")
    lines += [" },", ' "claims": {']
    claims = list(ledger["claims"].items())
    for i, (claim_id, entry) in enumerate(claims):
        head = {k: v for k, v in entry.items() if k != "runs"}
        lines.append(f"  {json.dumps(claim_id)}: {json.dumps(head, ensure_ascii=False)[:-1]},")
        lines.append('   "runs": {')
        runs = list(entry["runs"].items())
        for j, (seed, run) in enumerate(runs):
            comma = "," if j < len(runs) - 1 else ""
            lines.append(f"    {json.dumps(seed)}: {json.dumps(run)}{comma}")
        lines.append("   }}" + ("," if i < len(claims) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def problems(ledger: dict, stems: list[str]) -> list[str]:
    found = []
    for stem in stems:
        entry = ledger["chapters"][stem]
        for seed, errors in entry["errors"].items():
            found.append(f"{stem} seed {seed}: " + "; ".join(errors))
    for claim_id, entry in ledger["claims"].items():
        if entry["chapter"] in stems and entry["asserted"]:
            failed = [s for s, run in entry["runs"].items() if not run["held"]]
            if failed:
                found.append(f"{claim_id} is asserted but failed on seeds {', '.join(failed)}")
    return found


def summary(ledger: dict, stems: list[str]) -> str:
    lines = []
    for claim_id, entry in ledger["claims"].items():
        if entry["chapter"] not in stems:
            continue
        result = evidence.rate(claim_id, ledger)
        kind = "claim  " if entry["asserted"] else "observe"
        lines.append(f"{kind} {result.held:>2}/{result.seeds:<2} {claim_id:45} "
                     f"{result.spread('.3g') if result.values else ''}")  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,3,7 (default 0-9)")
    parser.add_argument("--chapters", nargs="*", help="chapter numbers, e.g. 06 07 (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="chapters run side by side")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    parser.add_argument("--ledger", type=Path, default=evidence.LEDGER_PATH)
    parser.add_argument("--check", action="store_true", help="only report stale chapters")
    args = parser.parse_args()

    chosen = notebooks(args.chapters)
    if args.check:
        stale = evidence.stale_chapters(chosen, evidence.load_ledger(args.ledger), ROOT)
        print("stale: " + (", ".join(stale) if stale else "none"))
        return 1 if stale else 0

    seeds = parse_seeds(args.seeds)
    # the slowest chapters first, so the two workers finish together
    previous = evidence.load_ledger(args.ledger).get("chapters", {})
    order = sorted(chosen, key=lambda nb: -max(previous.get(nb.stem, {}).get("seconds", {"": 30})
                                               .values()))  # fmt: skip
    tasks = [(nb, seed) for seed in seeds for nb in order]
    start = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(execute, nb, seed, Path(tmp) / f"{nb.stem}-{seed}", args.timeout):
                   (nb.stem, seed) for nb, seed in tasks}  # fmt: skip
        for done, future in enumerate(as_completed(futures), 1):
            result = future.result()
            results.append(result)
            status = "ok" if not result["errors"] else f"{len(result['errors'])} error(s)"
            print(f"[{done}/{len(tasks)}] {result['chapter']} seed {result['seed']}: "
                  f"{result['seconds']:.1f} s, {len(result['records'])} records, {status}",
                  flush=True)  # fmt: skip
    stems = [nb.stem for nb in chosen]
    # two runs on different chapters may finish together: merge under a lock
    with open(args.ledger.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ledger = merge(evidence.load_ledger(args.ledger), results, seeds, stems)
        args.ledger.write_text(dump(ledger))
    print(summary(ledger, stems))
    print(f"evidence run: {len(tasks)} executions in {time.perf_counter() - start:.0f} s; "
          f"ledger written to {args.ledger}")  # fmt: skip
    found = problems(ledger, stems)
    for problem in found:
        print("PROBLEM:", problem)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
