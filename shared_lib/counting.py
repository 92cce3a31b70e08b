"""Count parameters once or per use, and the memory they cost in training (chapters 01 and 03)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from shared_lib._validation import check_bool, check_choice, check_module

__all__ = ["OPTIMIZER_STATES", "ParameterMemory", "count_parameters", "parameter_memory"]

#: Tensors of optimizer state kept per parameter element, by optimizer.
OPTIMIZER_STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}


def count_parameters(module: nn.Module, unique: bool = True, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module``, each tensor once or once per use (chapter 01).

    Args:
        module: the model.
        unique: ``True`` counts every tensor once, however many modules use it (what the model
            stores); ``False`` counts it once per place it is registered (what the model would
            store if every use had its own copy).
        trainable_only: count only tensors with ``requires_grad``.

    Returns:
        The number of elements.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, or ``unique`` or ``trainable_only`` is
            not a bool.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lin = nn.Linear(4, 4); twice = nn.Sequential(lin, lin)  # one layer used twice
        >>> sl.count_parameters(twice), sl.count_parameters(twice, unique=False)
        (20, 40)
    """
    check_module(module, "module")
    check_bool(unique, "unique")
    check_bool(trainable_only, "trainable_only")
    params = (
        module.parameters()
        if unique
        else (p for _, p in module.named_parameters(remove_duplicate=False))
    )
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ParameterMemory:
    """Bytes that parameters cost during training: the weights, their gradients, optimizer state.

    Returned by :func:`parameter_memory` (chapter 03).

    Attributes:
        weights: bytes of the parameters themselves.
        gradients: bytes of their gradients (trainable parameters only).
        optimizer_state: bytes of the optimizer's per-parameter state (Adam's two moments, ...).

    Examples:
        >>> from shared_lib.counting import ParameterMemory
        >>> memory = ParameterMemory(weights=80, gradients=80, optimizer_state=160)
        >>> memory.total
        320
    """

    weights: int
    gradients: int
    optimizer_state: int

    @property
    def total(self) -> int:
        """Sum of the three parts, in bytes."""
        return self.weights + self.gradients + self.optimizer_state


def parameter_memory(
    module: nn.Module, optimizer: str = "adam", unique: bool = True
) -> ParameterMemory:
    """Bytes of weights, gradients and optimizer state for training ``module`` (chapter 03).

    Computed from the tensors' own dtypes; gradients only for trainable tensors; optimizer state
    is ``OPTIMIZER_STATES[optimizer]`` tensors of the parameter's size (Adam keeps two moments).
    Activations are not included: they depend on the batch, not on sharing.

    Args:
        module: the model.
        optimizer: one of :data:`OPTIMIZER_STATES` (``"sgd"``, ``"sgd_momentum"``, ``"adam"``,
            ``"adamw"``).
        unique: ``True`` counts every tensor once (what sharing saves); ``False`` once per use.

    Returns:
        The three parts, in bytes.

    Raises:
        TypeError: ``module`` is not an ``nn.Module``, ``optimizer`` not a string or ``unique``
            not a bool.
        ValueError: ``optimizer`` is not one of :data:`OPTIMIZER_STATES`.

    Examples:
        >>> from torch import nn
        >>> import shared_lib as sl
        >>> lin = nn.Linear(4, 4); twice = nn.Sequential(lin, lin)  # 20 float32 elements
        >>> sl.parameter_memory(twice).total, sl.parameter_memory(twice, unique=False).total
        (320, 640)
    """
    check_module(module, "module")
    check_choice(optimizer, "optimizer", sorted(OPTIMIZER_STATES))
    check_bool(unique, "unique")
    params = (
        list(module.parameters())
        if unique
        else [p for _, p in module.named_parameters(remove_duplicate=False)]
    )
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return ParameterMemory(
        weights=weights,
        gradients=trainable,
        optimizer_state=OPTIMIZER_STATES[optimizer] * trainable,
    )
