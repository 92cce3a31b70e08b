"""Argument checks shared by the library's modules (one definition, one wording of the error)."""

from __future__ import annotations


def check_int(value: object, argument: str, minimum: int) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``; else a TypeError/ValueError that
    names ``argument``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
    return value
