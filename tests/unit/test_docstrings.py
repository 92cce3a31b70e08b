"""Documentation that runs: every public function and class of the core has a Google-style
docstring with a runnable example; ``make test`` executes the examples (``--doctest-modules``).

Public means listed in a core module's ``__all__``. Functions document their arguments (Args),
what they return (Returns, or Yields) and what they raise (Raises) when their own body raises;
layers and models say what shapes they take and give (Shape).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import textwrap

import pytest
from torch import nn

import shared_lib

CORE_MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(shared_lib.__path__, "shared_lib.")
    if not info.name.startswith("shared_lib.book")
    and not info.name.rsplit(".", 1)[-1].startswith("_")
)


def public_objects():
    for module_name in CORE_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            # Documented where defined: a package re-exporting a name is not a second home.
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module_name:
                yield f"{module_name}.{name}", obj


PUBLIC = dict(public_objects())


def _raises_itself(function) -> bool:
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return False
    tree = ast.parse(source)
    body = tree.body[0]
    nested = {
        id(n)
        for child in ast.walk(body)
        if child is not body and isinstance(child, (ast.FunctionDef, ast.Lambda, ast.ClassDef))
        for n in ast.walk(child)
    }
    return any(isinstance(n, ast.Raise) and id(n) not in nested for n in ast.walk(body))


def _parameters(function) -> list[str]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def test_the_core_has_public_objects_to_document():
    assert len(PUBLIC) > 100


@pytest.mark.parametrize("qualified_name", sorted(PUBLIC))
def test_public_object_has_a_runnable_documented_example(qualified_name):
    obj = PUBLIC[qualified_name]
    doc = inspect.getdoc(obj) or ""
    missing = []
    if ">>>" not in doc:
        missing.append("an example (>>>)")
    if inspect.isfunction(obj):
        if _parameters(obj) and "Args:" not in doc:
            missing.append("Args:")
        annotation = inspect.signature(obj).return_annotation
        if annotation not in (None, "None", inspect.Signature.empty) and not (
            "Returns:" in doc or "Yields:" in doc
        ):
            missing.append("Returns:")
        if _raises_itself(obj) and "Raises:" not in doc:
            missing.append("Raises:")
    else:
        init = obj.__dict__.get("__init__")
        fields = getattr(obj, "__dataclass_fields__", None)
        documents_fields = "Args:" in doc or "Attributes:" in doc
        if ((init is not None and _parameters(init)) or fields) and not documents_fields:
            missing.append("Args: or Attributes:")
        if init is not None and _raises_itself(init) and "Raises:" not in doc:
            missing.append("Raises:")
        if issubclass(obj, nn.Module) and "Shape:" not in doc:
            missing.append("Shape:")
    assert not missing, f"{qualified_name}'s docstring lacks {', '.join(missing)}"
