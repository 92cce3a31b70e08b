"""The rule that says where everything lives in shared_lib, checked on the source.

A general concept is a core module of that name; every ``nn.Module`` lives in ``layers/`` or
``models/``; generated data lives in ``data/`` (generation only); a chapter's experiments live in
``shared_lib/book/``; the core never imports ``shared_lib.book``; no private name is imported
from another module; every experiment trains with ``training.train_steps``.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest
from torch import nn

PACKAGE = Path(__file__).resolve().parents[2] / "shared_lib"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# Deliberate exceptions to "every nn.Module lives in layers/ or models/", with their reason.
MODULES_ELSEWHERE = {
    # DESIGN.md's table: the cross-layer strategies and the stack that applies them, together.
    "shared_lib.sharing.SharedStack",
    # A marker wrapper that check_reentrant_sharing looks for; it means nothing elsewhere.
    "shared_lib.distributed.Checkpointed",
    # The private parametrization behind a transposed tie.
    "shared_lib.tying._Transpose",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_core(name: str) -> bool:
    return not name.startswith("shared_lib.book")


def imports(path: Path) -> list[ast.ImportFrom | ast.Import]:
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_modules(node: ast.ImportFrom | ast.Import) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]


def test_the_sources_are_found():
    assert len(SOURCES) > 40


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_every_nn_module_lives_in_layers_or_models(path):
    name = module_name(path)
    module = importlib.import_module(name)
    for attribute, obj in vars(module).items():
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)) or obj.__module__ != name:
            continue
        qualified = f"{name}.{attribute}"
        at_home = name.startswith(("shared_lib.layers", "shared_lib.models"))
        assert at_home or qualified in MODULES_ELSEWHERE, (
            f"{qualified} is an nn.Module: it belongs in shared_lib/layers/ or shared_lib/models/"
        )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_the_core_never_imports_the_chapters_code(path):
    name = module_name(path)
    if not is_core(name):
        return
    for node in imports(path):
        for imported in imported_modules(node):
            assert not imported.startswith("shared_lib.book"), f"{name} imports {imported}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_no_private_name_is_imported_from_another_module(path):
    for node in imports(path):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("shared_lib"):
            continue
        private = [alias.name for alias in node.names if alias.name.startswith("_")]
        assert not private, f"{module_name(path)} imports {private} from {node.module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_every_training_loop_is_training_train_steps(path):
    """No loop outside shared_lib.training calls both ``.backward()`` and ``.step()``."""
    if module_name(path) == "shared_lib.training":
        return
    tree = ast.parse(path.read_text())
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While)):
            continue
        called = {
            node.func.attr
            for node in ast.walk(loop)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        }
        assert not {"backward", "step"} <= called, (
            f"{module_name(path)}:{loop.lineno} is a hand-written training loop: "
            "use shared_lib.training.train_steps"
        )


@pytest.mark.parametrize(
    "path", [p for p in SOURCES if p.parent.name == "data"], ids=lambda p: module_name(p)
)
def test_data_modules_generate_data_only(path):
    """No plotting and no training in data/: those live in plotting, training and the book."""
    for node in imports(path):
        for imported in imported_modules(node):
            assert not imported.startswith(("matplotlib", "shared_lib.training")), imported
    source = path.read_text()
    assert ".backward(" not in source and "torch.optim" not in source
