"""Time every chapter's execution on this machine, next to an import-only floor (`make bench`).

A benchmark, not a test: it prints a table and flags chapters over the 60 s budget. Each notebook
runs in a fresh kernel, as nbval and the site build run it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BUDGET_SECONDS = 60.0

FLOOR = nbformat.v4.new_notebook(
    cells=[nbformat.v4.new_code_cell("import shared_lib, torch, matplotlib.pyplot")],
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)


def run(notebook: nbformat.NotebookNode, cwd: Path) -> float:
    """Wall-clock seconds to start a kernel and execute every cell."""
    start = time.perf_counter()
    resources = {"metadata": {"path": str(cwd)}}
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources).execute()
    return time.perf_counter() - start


def main() -> int:
    chapters = sorted((ROOT / "chapters").glob("*.ipynb"))
    floor = run(FLOOR, ROOT)
    print(f"{'notebook':45} {'seconds':>8} {'minus floor':>12}")
    print(f"{'(floor: kernel start + imports)':45} {floor:8.1f} {'':>12}")
    over = []
    for path in chapters:
        seconds = run(nbformat.read(path, as_version=4), path.parent)
        flag = "  OVER BUDGET" if seconds > BUDGET_SECONDS else ""
        print(f"{path.name:45} {seconds:8.1f} {seconds - floor:12.1f}{flag}")
        if seconds > BUDGET_SECONDS:
            over.append(path.name)
    print(f"budget: {BUDGET_SECONDS:.0f} s per chapter; over budget: {over or 'none'}")
    record = ROOT / "_build" / "make-test-seconds.txt"
    if record.exists():
        print(f"last `make test` on this machine: {record.read_text().strip()} s")
    else:
        print("`make test` has not finished on this checkout yet: no time recorded")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
