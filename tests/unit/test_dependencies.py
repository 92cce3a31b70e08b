"""The core of shared_lib needs torch, numpy, safetensors and tqdm only; matplotlib, scikit-learn
and ipywidgets are the extra ``shared_lib[book]``, imported only by what draws or loads digits."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import tomllib

import shared_lib

ROOT = Path(__file__).resolve().parents[2]
BOOK_EXTRA = ("matplotlib", "sklearn", "ipywidgets", "IPython")
CORE_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(shared_lib.__path__, "shared_lib.")
    if not info.name.startswith("shared_lib.book")
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )


def test_the_core_lists_the_modules_the_design_names():
    names = "tying counting sharing uses guards checkpoint training profiling distributed"
    names += " plotting explore layers models data"
    for name in names.split():
        assert f"shared_lib.{name}" in CORE_MODULES


def test_importing_the_core_imports_no_optional_dependency():
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in {BOOK_EXTRA!r} if m in sys.modules))\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"the core imported {result.stdout.strip()}"


def test_the_core_works_without_the_book_extra_and_says_what_to_install():
    # None in sys.modules makes `import matplotlib` (and the others) fail, as if not installed.
    code = (
        "import sys, tempfile, os\n"
        f"for name in {BOOK_EXTRA!r}:\n"
        "    sys.modules[name] = None\n"
        "import torch, shared_lib as sl\n"
        "from shared_lib.models import GPT, GPTConfig\n"
        "model = GPT(GPTConfig(vocab_size=11, block_size=4, n_layer=1, n_head=1, n_embd=4))\n"
        "path = os.path.join(tempfile.mkdtemp(), 'tied.safetensors')\n"
        "sl.save_checkpoint(model, path)\n"
        "sl.load_checkpoint(model, path)\n"
        "print(sl.count_parameters(model), len(sl.shared_groups(model)))\n"
        "from shared_lib.plotting import book_style\n"
        "try:\n"
        "    with book_style():\n"
        "        pass\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "from shared_lib.data import digits\n"
        "try:\n"
        "    digits()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    counts, plot_error, data_error = result.stdout.strip().splitlines()
    assert counts.split()[1] == "1"  # the tied embedding survived the round trip
    assert "matplotlib" in plot_error and "shared_lib[book]" in plot_error
    assert "sklearn" in data_error and "shared_lib[book]" in data_error


def test_the_package_declares_the_core_dependencies_and_the_book_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {requirement.split(">")[0].split("=")[0] for requirement in project["dependencies"]}
    assert core == {"torch", "numpy", "safetensors", "tqdm"}
    book = {requirement.split(">")[0] for requirement in project["optional-dependencies"]["book"]}
    assert book == {"matplotlib", "scikit-learn", "ipywidgets"}
