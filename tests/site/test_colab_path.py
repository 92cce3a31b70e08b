"""The Colab path, as well as it can be tested offline (`make colab-check`).

Colab already has torch. A chapter's setup cell, run there, must install `shared_lib` from the
repository and leave Colab's torch alone. Here: a fresh virtual environment gets torch and the
other packages Colab ships, a local repository stands in for GitHub (`git+file://`), a fake
`google.colab` module makes the setup cell believe it runs in Colab, and the chapter executes
from a folder outside the repository, so `shared_lib` can only come from that install.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]


CHAPTER = ROOT / "chapters" / "01_what_is_parameter_sharing.ipynb"


#: What Colab has before the setup cell runs (versions from this book's own pins).
COLAB_PACKAGES = ["torch", "numpy", "matplotlib", "scikit-learn", "tqdm", "ipywidgets",
                  "ipykernel", "nbclient", "nbformat", "pyyaml"]  # fmt: skip


def pinned(names: list[str]) -> list[str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = f"{name.strip()}=={version.strip()}"
    return [pins.get(name.lower(), name) for name in names]


def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def local_repository(tmp: Path) -> Path:
    """A git repository holding the library as it is in the working tree (what CI would push)."""
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "shared_lib", repo / "shared_lib",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run(*git, "init", "-q", cwd=repo)
    run(*git, "add", ".", cwd=repo)
    run(*git, "commit", "-q", "-m", "library", cwd=repo)
    return repo


@pytest.mark.timeout(900)
def test_setup_cell_installs_the_library_in_colab_and_keeps_its_torch(tmp_path):
    repo = local_repository(tmp_path)
    venv = tmp_path / "colab"
    run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    # Colab's pip is recent; the one bundled with Python 3.11.7 (23.2) rejects git+file:// URLs.
    run(python, "-m", "pip", "install", "-q", "pip>=24", env=env)
    run(python, "-m", "pip", "install", "-q", *pinned(COLAB_PACKAGES), env=env)
    probe = "import torch; print(torch.__version__, torch.__file__)"
    torch_before = run(python, "-c", probe, env=env)

    notebook = nbformat.read(CHAPTER, as_version=4)
    setup = notebook.cells[1]
    url = re.search(r'"shared_lib\[book\] @ git\+([^"]+)"', setup.source).group(1)
    setup.source = setup.source.replace(url, f"file://{repo}")
    # Make the setup cell believe it runs in Colab.
    fake_colab = nbformat.v4.new_code_cell(
        "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')"
    )
    notebook.cells.insert(1, fake_colab)
    workdir = tmp_path / "outside"
    workdir.mkdir()
    nbformat.write(notebook, workdir / "chapter.ipynb")
    script = (
        "import nbformat, nbclient, sys\n"
        "nb = nbformat.read('chapter.ipynb', as_version=4)\n"
        "nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',\n"
        "    resources={'metadata': {'path': '.'}}).execute()\n"
        "nbformat.write(nb, 'executed.ipynb')\n"
    )
    env["MPLBACKEND"] = "Agg"
    run(python, "-c", script, cwd=workdir, env=env)

    assert run(python, "-c", probe, env=env) == torch_before, "the setup cell replaced torch"
    location = run(python, "-c", "import shared_lib; print(shared_lib.__file__)", cwd=workdir,
                   env=env)  # fmt: skip
    assert str(venv) in location and str(ROOT) not in location
    executed = json.loads((workdir / "executed.ipynb").read_text())
    outputs = [o for cell in executed["cells"] for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
