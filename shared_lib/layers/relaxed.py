"""Sharing across depth: a looped block and a LoRA-relaxed shared stack (chapter 06).

:class:`LoopedNet` applies one step module as many times as asked, so the depth can change at
test time (the idea of the Universal Transformer, Dehghani et al. 2019).
:class:`RelaxedSharedStack` relaxes full sharing with a small per-layer LoRA, after Bae et al.
(2024), "Relaxed Recursive Transformers: Effective Parameter Sharing with Layer-wise LoRA":
layer ``i`` of the stack runs the shared block with each target weight ``W`` replaced by
``W + B_i A_i``, where ``A_i`` is ``rank × fan_in`` and ``B_i`` is ``fan_out × rank``. Rank 0
is a fully shared stack; a rank as large as the weights allows lets every layer reach any
weight of its own (at more parameters than an unshared stack).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from shared_lib._validation import check_bool, check_int, check_module, describe

__all__ = ["LoopedNet", "RelaxedSharedStack"]


class LoopedNet(nn.Module):
    """``encoder`` → one ``step`` applied ``steps`` times → ``decoder``; one set of weights for
    every iteration, so ``forward(x, steps=k)`` may run more (or fewer) iterations than training
    (chapter 06).

    The step is called as ``step(state, inputs)``: the encoded input is fed to every iteration
    (so the step never forgets the question) and the state starts at zero. With a local step
    (a convolution, say) information travels a fixed distance per iteration, which makes the
    number of iterations the depth of reasoning.

    Args:
        encoder: maps the input to the per-iteration input ``inputs`` (and the state's shape).
        step: the shared iteration, ``step(state, inputs) -> new state``.
        decoder: maps the final state to the output.
        steps: iterations when ``forward`` is not told otherwise.

    Raises:
        TypeError: a part is not an ``nn.Module``, or ``steps`` is not an int.
        ValueError: ``steps`` is below 1.

    Shape:
        - Input: what ``encoder`` takes; ``encoder(x)`` gives the shape of the state.
        - Output: what ``decoder`` gives for a state of that shape.

    Examples:
        One step's weights for any number of iterations.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.relaxed import LoopedNet
        >>> from shared_lib.models.small import ConvStep
        >>> net = LoopedNet(nn.Linear(1, 8), ConvStep(8), nn.Linear(8, 1), steps=4)
        >>> x = torch.randn(2, 12, 1)  # 2 rows of 12 cells
        >>> net(x).shape, net(x, steps=12).shape  # 12 iterations at test time, same weights
        (torch.Size([2, 12, 1]), torch.Size([2, 12, 1]))
        >>> count_parameters(net)  # encoder 16 + step 200 + decoder 9, whatever the steps
        225
    """

    def __init__(self, encoder: nn.Module, step: nn.Module, decoder: nn.Module, steps: int) -> None:
        super().__init__()
        for argument, module in (("encoder", encoder), ("step", step), ("decoder", decoder)):
            check_module(module, argument)
        self.encoder, self.step, self.decoder = encoder, step, decoder
        self.steps = check_int(steps, "steps", 1)

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Encode ``x``, iterate the shared step ``steps`` times (default ``self.steps``), decode.

        Raises:
            TypeError: ``steps`` is not an int.
            ValueError: ``steps`` is below 1.
        """
        steps = self.steps if steps is None else check_int(steps, "steps", 1)
        inputs = self.encoder(x)
        state = torch.zeros_like(inputs)
        for _ in range(steps):
            state = self.step(state, inputs)  # the same weights at every iteration
        return self.decoder(state)

    def extra_repr(self) -> str:
        return f"steps={self.steps}"


class RelaxedSharedStack(nn.Module):
    """One block applied ``n_layers`` times, layer ``i`` with weights ``W + B_i A_i`` (ch. 06).

    Args:
        block: the shared block, or a callable returning it (called once).
        n_layers: how many times the block is applied.
        rank: rank of each layer's correction; 0 means full sharing (no LoRA parameters).
        targets: names (as in ``block.named_modules()``) of the submodules whose ``weight`` gets
            a per-layer correction; ``None`` picks every :class:`torch.nn.Linear` in the block.
            Any weight with two or more dimensions works (a convolution's is flattened to
            ``out × (in · kernel)``).
        residual: compute ``x + block(x)`` at every layer instead of ``block(x)``.

    ``B_i`` starts at zero, so a new stack computes exactly what the fully shared one does;
    training moves each layer away from the shared weights only as far as its rank allows.
    Unique parameters: ``count_parameters(block) + n_layers · rank · Σ_targets (fan_in +
    fan_out)`` (:meth:`expected_parameters`).

    Raises:
        TypeError: ``block`` is neither a module nor a callable returning one; ``n_layers`` or
            ``rank`` is not an int; ``residual`` is not a bool; ``targets`` is not a list.
        ValueError: ``n_layers`` is below 1 or ``rank`` negative; ``targets`` names a missing
            submodule, one without a 2-D weight, or one twice; ``rank > 0`` with no target.

    Shape:
        - Input: what ``block`` takes.
        - Output: the same shape (each layer's output is the next layer's input).

    Examples:
        Rank 0 is full sharing; rank 1 adds 16 numbers per layer for the 8 × 8 weight and
        starts as the same function.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.layers.relaxed import RelaxedSharedStack
        >>> block = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        >>> shared = RelaxedSharedStack(block, n_layers=6)
        >>> relaxed = RelaxedSharedStack(block, n_layers=6, rank=1)
        >>> count_parameters(shared), count_parameters(relaxed), relaxed.expected_parameters()
        (72, 168, 168)
        >>> x = torch.randn(3, 8)
        >>> torch.allclose(shared(x), relaxed(x))  # B_i = 0 at the start
        True
    """

    def __init__(
        self,
        block: nn.Module | Callable[[], nn.Module],
        n_layers: int,
        rank: int = 0,
        targets: Sequence[str] | None = None,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(block, nn.Module):
            if not callable(block):
                raise TypeError(
                    f"block must be an nn.Module or a callable returning one, got {describe(block)}"
                )
            block = block()
            if not isinstance(block, nn.Module):
                raise TypeError(f"block() must return an nn.Module, got {describe(block)}")
        self.n_layers = check_int(n_layers, "n_layers", 1)
        self.rank = check_int(rank, "rank", 0)
        self.residual = check_bool(residual, "residual")
        self.block = block
        self.targets = self._resolve_targets(block, targets)
        if self.rank > 0 and not self.targets:
            raise ValueError(
                "rank > 0 needs at least one target weight; the block has no nn.Linear"
            )
        # Per target: A (n_layers, rank, fan_in) and B (n_layers, fan_out, rank), stacked by layer.
        self.lora_a = nn.ParameterDict()
        self.lora_b = nn.ParameterDict()
        if self.rank > 0:
            for name in self.targets:
                weight = self._weight(name)
                fan_out, fan_in = weight.shape[0], weight[0].numel()
                key = self._key(name)
                self.lora_a[key] = nn.Parameter(weight.new_empty(n_layers, rank, fan_in))
                self.lora_b[key] = nn.Parameter(weight.new_empty(n_layers, fan_out, rank))
        self.reset_lora()

    @staticmethod
    def _resolve_targets(block: nn.Module, targets: Sequence[str] | None) -> list[str]:
        modules = dict(block.named_modules())
        if targets is None:
            return [name for name, module in modules.items() if isinstance(module, nn.Linear)]
        if isinstance(targets, str) or not isinstance(targets, Sequence):
            raise TypeError(f"targets must be a list of module names, got {describe(targets)}")
        resolved = []
        for name in targets:
            if name not in modules:
                raise ValueError(f"targets names {name!r}, which is not a submodule of block")
            weight = getattr(modules[name], "weight", None)
            if not isinstance(weight, nn.Parameter) or weight.dim() < 2:
                raise ValueError(f"targets names {name!r}, which has no 2-D (or larger) weight")
            if name in resolved:
                raise ValueError(f"targets names {name!r} twice")
            resolved.append(name)
        return resolved

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__") or "_self"

    def _weight(self, name: str) -> nn.Parameter:
        return self.block.get_submodule(name).weight

    def reset_lora(self) -> None:
        """Re-initialise the corrections: ``A`` as in LoRA (Kaiming-uniform), ``B = 0``."""
        for key in self.lora_a:
            for layer in range(self.n_layers):
                nn.init.kaiming_uniform_(self.lora_a[key].data[layer], a=math.sqrt(5))
            nn.init.zeros_(self.lora_b[key])

    def delta(self, layer: int, name: str) -> torch.Tensor:
        """The correction ``B_i A_i`` of target ``name`` at ``layer``, shaped like its weight.

        Args:
            layer: index of the layer, ``0 … n_layers-1``.
            name: one of ``targets``.

        Returns:
            A tensor of the target weight's shape (zeros when ``rank`` is 0).

        Raises:
            TypeError: ``layer`` is not an int.
            ValueError: ``layer`` is out of range, or ``name`` is not a target.
        """
        check_int(layer, "layer", 0)
        if layer >= self.n_layers:
            raise ValueError(f"layer must be < n_layers ({self.n_layers}), got {layer}")
        if name not in self.targets:
            raise ValueError(f"name must be one of the targets {self.targets}, got {name!r}")
        weight = self._weight(name)
        if self.rank == 0:
            return torch.zeros_like(weight)
        key = self._key(name)
        return (self.lora_b[key][layer] @ self.lora_a[key][layer]).view_as(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block applied ``n_layers`` times, layer ``i`` with its corrected weights."""
        for layer in range(self.n_layers):
            if self.rank == 0:
                out = self.block(x)
            else:
                weights = {
                    f"{name}.weight" if name else "weight": self._weight(name)
                    + self.delta(layer, name)
                    for name in self.targets
                }
                out = functional_call(self.block, weights, (x,), strict=False)
            x = x + out if self.residual else out
        return x

    def unshared_blocks(self) -> list[nn.Module]:
        """Independent copies of the block, copy ``i`` holding layer ``i``'s merged weights
        ``W + B_i A_i``: the same function as the stack, with no sharing left."""
        blocks = []
        for layer in range(self.n_layers):
            clone = copy.deepcopy(self.block)
            with torch.no_grad():
                for name in self.targets:
                    clone.get_submodule(name).weight.add_(self.delta(layer, name))
            blocks.append(clone)
        return blocks

    def expected_parameters(self) -> int:
        """``count_parameters(block) + n_layers · rank · Σ (fan_in + fan_out)`` over targets."""
        shared = sum(p.numel() for p in self.block.parameters())
        per_layer = sum(
            self._weight(name)[0].numel() + self._weight(name).shape[0] for name in self.targets
        )
        return shared + self.n_layers * self.rank * per_layer

    def extra_repr(self) -> str:
        return (
            f"n_layers={self.n_layers}, rank={self.rank}, targets={self.targets}, "
            f"residual={self.residual}"
        )
