"""Everywhere in the core of ``shared_lib``, a flag must be a bool and a seed must be an int.

The static test reads every core module (everything under ``shared_lib/`` except ``book/``) with
``ast``: each public function, method and class ``__init__`` (public = named in the module's
``__all__``, and the public methods of those classes) whose signature has a parameter annotated
``bool`` (or ``bool | None``) must check it in its own body with ``check_bool(<name>``, and every
parameter named ``seed`` (or ``*_seed``) with ``check_int(seed``. A dataclass's fields annotated
``bool`` must be checked in its ``__post_init__`` (``check_bool(self.<name>``). A parameter that
is only passed straight on to another public callable that checks it is named in ``PASSED_ON``
with the reason.

The behavioural test then calls a sample of them with a wrong flag or seed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import shared_lib
from shared_lib import distributed, training
from shared_lib.checkpoint import format as checkpoint_format
from shared_lib.data import pairs, sequences, signals, splits, text
from shared_lib.layers import compressed, hashed, local, recursion
from shared_lib.models import moe

CORE = Path(shared_lib.__file__).parent
CORE_FILES = sorted(
    path
    for path in CORE.rglob("*.py")
    if "book" not in path.relative_to(CORE).parts[:-1] and path.name != "_validation.py"
)

# (module path relative to shared_lib/, qualified name, parameter) -> why no check of its own
PASSED_ON: dict[tuple[str, str, str], str] = {
    ("distributed.py", "wrap_ddp", "static_graph"): (
        "its first line passes it to check_reentrant_sharing, which runs check_bool on it "
        "before DistributedDataParallel sees it"
    ),
}


def _is_seed(name: str) -> bool:
    """``seed`` and ``<something>_seed`` (``data_seed``)."""
    return name == "seed" or name.endswith("_seed")


def _module_all(tree: ast.Module) -> set[str]:
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Name) and target.id == "__all__":
                return {ast.literal_eval(element) for element in node.value.elts}
    return set()


def _is_bool_annotation(annotation: ast.expr | None) -> bool:
    """``bool``, ``bool | None``, ``None | bool``, ``Optional[bool]`` (also as strings)."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _is_bool_annotation(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.Name):
        return annotation.id == "bool"
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = (annotation.left, annotation.right)
        names = {
            side.id if isinstance(side, ast.Name) else getattr(side, "value", "?") for side in sides
        }
        return names in ({"bool", None}, {"bool"})
    if isinstance(annotation, ast.Subscript) and isinstance(annotation.value, ast.Name):
        return annotation.value.id == "Optional" and _is_bool_annotation(annotation.slice)
    return False


def _checked_names(function: ast.AST, checker: str) -> set[str]:
    """Names ``x`` (and ``self.x``) given as first argument to ``checker(...)`` in ``function``."""
    names = set()
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == checker
            and node.args
        ):
            first = node.args[0]
            if isinstance(first, ast.Name):
                names.add(first.id)
            elif (
                isinstance(first, ast.Attribute)
                and isinstance(first.value, ast.Name)
                and first.value.id == "self"
            ):
                names.add(first.attr)
    return names


def _parameters(function: ast.FunctionDef) -> list[ast.arg]:
    args = function.args
    return [*args.posonlyargs, *args.args, *args.kwonlyargs]


def _is_dataclass(cls: ast.ClassDef) -> bool:
    for decorator in cls.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def _is_public_method(name: str) -> bool:
    return not name.startswith("_") or name in ("__init__", "__call__", "__post_init__")


def _function_requirements(module: str, qualname: str, function: ast.FunctionDef) -> list:
    found = []
    for parameter in _parameters(function):
        if _is_bool_annotation(parameter.annotation):
            found.append((module, qualname, parameter.arg, "check_bool", function))
        if _is_seed(parameter.arg):
            found.append((module, qualname, parameter.arg, "check_int", function))
    return found


def _dataclass_requirements(module: str, cls: ast.ClassDef, post_init: ast.AST | None) -> list:
    """Fields annotated ``bool`` (and seeds) must be checked in ``__post_init__``."""
    where = post_init if post_init is not None else ast.Pass()  # no __post_init__: unchecked
    found = []
    for item in cls.body:
        if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
            continue
        field = item.target.id
        if _is_bool_annotation(item.annotation):
            found.append((module, f"{cls.name}.{field}", field, "check_bool", where))
        if _is_seed(field):
            found.append((module, f"{cls.name}.{field}", field, "check_int", where))
    return found


def _requirements() -> list[tuple[str, str, str, str, ast.AST]]:
    """(module, qualified name, parameter, checker, node that must hold the check)."""
    found = []
    for path in CORE_FILES:
        module = path.relative_to(CORE).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        public = _module_all(tree)
        for node in tree.body:
            if getattr(node, "name", None) not in public:
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += _function_requirements(module, node.name, node)
            elif isinstance(node, ast.ClassDef):
                methods = {
                    item.name: item
                    for item in node.body
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                }
                for name, method in methods.items():
                    if _is_public_method(name):
                        found += _function_requirements(module, f"{node.name}.{name}", method)
                if _is_dataclass(node):
                    found += _dataclass_requirements(module, node, methods.get("__post_init__"))
    return found


REQUIREMENTS = _requirements()


def test_the_scan_finds_the_known_flags_and_seeds():
    keys = {(module, qualname, name) for module, qualname, name, _, _ in REQUIREMENTS}
    assert ("layers/local.py", "conv2d_parameter_count", "bias") in keys
    assert ("models/moe.py", "MoETransformerConfig.tie_embeddings", "tie_embeddings") in keys
    assert ("training.py", "evaluate", "amp") in keys
    assert any(name == "seed" and module.startswith("data/") for module, _, name in keys)
    assert len(REQUIREMENTS) > 40


def test_every_flag_and_seed_is_checked():
    missing = []
    for module, qualname, name, checker, node in REQUIREMENTS:
        if (module, qualname, name) in PASSED_ON:
            continue
        if name not in _checked_names(node, checker):
            missing.append(f"{module}: {qualname}({name}) needs {checker}({name}, ...)")
    assert not missing, "unchecked flags/seeds:\n" + "\n".join(missing)


def test_the_allow_list_is_not_stale():
    keys = {(module, qualname, name) for module, qualname, name, _, _ in REQUIREMENTS}
    stale = [key for key in PASSED_ON if key not in keys]
    assert not stale, f"PASSED_ON names what the scan no longer finds: {stale}"


linear = torch.nn.Linear(4, 4)

# (argument the message must name, exception, a call with a wrong flag or seed)
WRONG_CALLS = [
    ("bias", TypeError, lambda: local.conv2d_parameter_count(3, 16, 3, bias="no")),
    ("bias", TypeError, lambda: local.linear_parameter_count(4, 5, bias=1)),
    ("bias", TypeError, lambda: local.LocallyConnected2d(1, 2, 8, 3, bias=None)),
    ("bias", TypeError, lambda: hashed.HashedLinear(8, 4, 16, bias="yes")),
    ("bias", TypeError, lambda: compressed.LowRankLinear(8, 4, 2, bias=0)),
    ("fix_zero", TypeError, lambda: compressed.SoftWeightSharing(4, fix_zero=1)),
    ("rising", TypeError, lambda: signals.chirp(rising="up")),
    ("flat", TypeError, lambda: splits.digits(flat=1)),
    ("seed", TypeError, lambda: splits.digits(seed="a")),
    ("flat", TypeError, lambda: pairs.held_out_digits(flat=1)),
    ("seed", TypeError, lambda: sequences.make_sequence_task(4, 5, seed="a")),
    (
        "seed",
        TypeError,
        lambda: splits.balanced_subset(torch.tensor([0, 1, 0, 1]), 2, seed=1.5),
    ),
    ("seed", TypeError, lambda: splits.Batches(torch.zeros(4, 1), torch.zeros(4), 2, seed="x")),
    ("seed", TypeError, lambda: text.generate_sentences(2, seed=None)),
    (
        "amp",
        TypeError,
        lambda: training.evaluate(linear, [], torch.nn.functional.mse_loss, amp="no"),
    ),
    ("enabled", TypeError, lambda: training.autocast_for("cpu", enabled=1)),
    ("prefer", ValueError, lambda: training.get_device("gpu")),
    ("prefer", TypeError, lambda: training.get_device(3)),
    ("static_graph", TypeError, lambda: distributed.wrap_ddp(linear, static_graph=1)),
    ("strict", TypeError, lambda: checkpoint_format.check_architecture(None, {}, strict="yes")),
    ("normalize_topk", TypeError, lambda: moe.MoEConfig(4, 8, 2, 1, normalize_topk=1)),
    (
        "start_bias",
        TypeError,
        lambda: recursion.MixtureOfRecursions(linear, 2, 4, start_depth=1, start_bias="4"),
    ),
    (
        "hard",
        TypeError,
        lambda: recursion.MixtureOfRecursions(linear, 2, 4)(torch.zeros(3, 4), hard=1),
    ),
]


@pytest.mark.parametrize(
    ("argument", "error", "call"),
    WRONG_CALLS,
    ids=[f"{index}-{argument}" for index, (argument, _, _) in enumerate(WRONG_CALLS)],
)
def test_a_wrong_flag_or_seed_is_refused_by_name(argument, error, call):
    with pytest.raises(error, match=argument):
        call()
