"""Argument checks shared by the library's modules: one definition, one wording of the error.

The rule everywhere in ``shared_lib``: a value of the wrong *type* raises :class:`TypeError`, a
value of the right type but outside what is allowed raises :class:`ValueError`, a flag must be a
real ``bool`` (``0``/``1`` are refused), and every message names the argument, what was expected
and what was given. Each check returns the value, so that it can be used inline.

>>> check_int(3, "n_layers", minimum=1)
3
>>> check_int(True, "n_layers")
Traceback (most recent call last):
TypeError: n_layers must be an int, got bool True
>>> check_float(1.5, "lr", low=0.0, low_inclusive=False)
1.5
>>> check_choice("cycle", "strategy", ("sequence", "cycle", "cycle_rev"))
'cycle'
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Collection
from types import ModuleType

from torch import nn

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_float",
    "check_instance",
    "check_int",
    "check_module",
    "describe",
    "require_extra",
]


def describe(value: object) -> str:
    """``"<type> <repr>"`` of ``value``, cut to a readable length, for error messages."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def check_int(
    value: object, argument: str, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) within ``[minimum, maximum]``.

    Raises:
        TypeError: ``value`` is not an int (a bool is not accepted).
        ValueError: ``value`` is below ``minimum`` or above ``maximum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{argument} must be <= {maximum}, got {value}")
    return value


def check_float(
    value: object,
    argument: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """``value`` as a ``float`` if it is a finite real number (an int is accepted, a bool is not)
    within the bounds given.

    Raises:
        TypeError: ``value`` is not a real number.
        ValueError: ``value`` is NaN or infinite, or outside the bounds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a real number, got {describe(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{argument} must be finite, got {value}")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        raise ValueError(f"{argument} must be {'>=' if low_inclusive else '>'} {low}, got {value}")
    if high is not None and (value > high or (value == high and not high_inclusive)):
        sign = "<=" if high_inclusive else "<"
        raise ValueError(f"{argument} must be {sign} {high}, got {value}")
    return value


def check_bool(value: object, argument: str) -> bool:
    """``value`` if it is a ``bool`` (``0``, ``1`` and ``None`` are refused).

    Raises:
        TypeError: ``value`` is not a bool.
    """
    if not isinstance(value, bool):
        raise TypeError(f"{argument} must be True or False, got {describe(value)}")
    return value


def check_choice(value: object, argument: str, choices: Collection[str]) -> str:
    """``value`` if it is one of the strings ``choices``.

    Raises:
        TypeError: ``value`` is not a string.
        ValueError: ``value`` is not one of ``choices`` (the message lists them).
    """
    options = ", ".join(repr(choice) for choice in choices)
    if not isinstance(value, str):
        raise TypeError(f"{argument} must be one of {options}; got {describe(value)}")
    if value not in choices:
        raise ValueError(f"{argument} must be one of {options}; got {value!r}")
    return value


def check_module(value: object, argument: str = "module") -> nn.Module:
    """``value`` if it is an :class:`torch.nn.Module`.

    Raises:
        TypeError: ``value`` is not an nn.Module.
    """
    if not isinstance(value, nn.Module):
        raise TypeError(f"{argument} must be a torch.nn.Module, got {describe(value)}")
    return value


def require_extra(module: str, purpose: str) -> ModuleType:
    """Import ``module``, one of the book's optional dependencies, or raise an ImportError that
    says how to install it.

    The core of ``shared_lib`` needs only torch, numpy, safetensors and tqdm; plots, explorers
    and the digits data need matplotlib, ipywidgets and scikit-learn, the extra
    ``shared_lib[book]``.

    Raises:
        ImportError: ``module`` is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs {module.split('.')[0]}, one of the book's optional dependencies: "
            f"pip install 'shared_lib[book]'"
        ) from error


def check_instance(
    value: object, argument: str, expected: type | tuple[type, ...], name: str | None = None
) -> object:
    """``value`` if it is an instance of ``expected`` (a type or a tuple of types); ``name``
    says what was expected in the message (by default the types' names).

    Raises:
        TypeError: ``value`` is not an instance of ``expected``.
    """
    if not isinstance(value, expected):
        if name is None:
            types = expected if isinstance(expected, tuple) else (expected,)
            name = " or ".join(
                t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
                for t in types
            )
        raise TypeError(f"{argument} must be a {name}, got {describe(value)}")
    return value


def check_callable(value: object, argument: str, hint: str = "") -> object:
    """``value`` if it can be called; ``hint`` (e.g. ``"taking no arguments"``) ends the message.

    Raises:
        TypeError: ``value`` is not callable.
    """
    if not callable(value):
        wanted = f"callable {hint}" if hint else "callable"
        raise TypeError(f"{argument} must be {wanted}, got {describe(value)}")
    return value
