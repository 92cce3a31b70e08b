"""Count parameters once or per use, and the memory they cost in training (chapters 01 and 03)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

__all__ = ["OPTIMIZER_STATES", "ParameterMemory", "count_parameters", "parameter_memory"]

#: Tensors of optimizer state kept per parameter element, by optimizer.
OPTIMIZER_STATES = {"sgd": 0, "sgd_momentum": 1, "adam": 2, "adamw": 2}


def _check_module(module: object) -> nn.Module:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    return module


def count_parameters(module: nn.Module, unique: bool = True, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module``.

    Args:
        module: the model.
        unique: ``True`` counts every tensor once, however many modules use it (what the model
            stores); ``False`` counts it once per place it is registered (what the model would
            store if every use had its own copy).
        trainable_only: count only tensors with ``requires_grad``.

    >>> lin = nn.Linear(4, 4); twice = nn.Sequential(lin, lin)
    >>> count_parameters(twice), count_parameters(twice, unique=False)
    (20, 40)
    """
    _check_module(module)
    if not isinstance(unique, bool):
        raise TypeError(f"unique must be a bool, got {type(unique).__name__}")
    params = (
        module.parameters()
        if unique
        else (p for _, p in module.named_parameters(remove_duplicate=False))
    )
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)


@dataclass(frozen=True)
class ParameterMemory:
    """Bytes that parameters cost during training: the weights, their gradients, optimizer state."""

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
    """Bytes of weights, gradients and optimizer state for training ``module``.

    Computed from the tensors' own dtypes; gradients only for trainable tensors; optimizer state
    is ``OPTIMIZER_STATES[optimizer]`` tensors of the parameter's size (Adam keeps two moments).
    Activations are not included: they depend on the batch, not on sharing.
    """
    _check_module(module)
    if optimizer not in OPTIMIZER_STATES:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZER_STATES)}, got {optimizer!r}")
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
