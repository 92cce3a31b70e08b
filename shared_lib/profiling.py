"""What one training step costs: bytes, FLOPs and seconds (chapter 03).

:func:`memory_report` puts the four kinds of training memory side by side — weights, gradients,
optimizer state (from :func:`shared_lib.counting.parameter_memory`) and the activations that
autograd keeps for the backward pass — together with the FLOPs of one forward + backward pass.
:func:`step_time` times a whole step, its forward + backward passes, or the optimizer update
alone, with :func:`shared_lib.training.benchmark` (warm-up, repeats, median, CUDA synchronized).

Sharing a tensor across L uses divides the first three by up to L; the last two depend on how
often the tensor is *used*, not on how many copies exist, so sharing leaves them alone.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import (
    check_callable,
    check_choice,
    check_instance,
    check_int,
    check_module,
    describe,
)
from shared_lib.counting import parameter_memory
from shared_lib.training import benchmark, synchronize

__all__ = [
    "MemoryReport",
    "activation_bytes",
    "compare_step_times",
    "format_bytes",
    "format_reports",
    "memory_report",
    "optimizer_state_bytes",
    "step_flops",
    "step_time",
]

#: How :func:`activation_bytes` may measure: from autograd's saved tensors, or the CUDA peak.
ACTIVATION_METHODS = ("auto", "saved", "peak")


Inputs = torch.Tensor | Sequence[torch.Tensor]


LossFn = Callable[..., torch.Tensor]


def format_bytes(count: float) -> str:
    """``1536`` → ``'1.50 KiB'``: a byte count in binary units (chapter 03).

    Bytes are printed whole; KiB, MiB and GiB with two decimals. GiB is the largest unit.

    Args:
        count: a number of bytes.

    Returns:
        The count with its unit, e.g. ``'2.25 MiB'``.

    Examples:
        >>> from shared_lib.profiling import format_bytes
        >>> format_bytes(512), format_bytes(1536)
        ('512 B', '1.50 KiB')
        >>> format_bytes(4 * 768 * 768)  # one float32 768 × 768 weight, stored once if shared
        '2.25 MiB'
    """
    value = float(count)
    if abs(value) < 1024:
        return f"{value:.0f} B"
    for unit in ("KiB", "MiB"):
        value /= 1024
        if abs(value) < 1024:
            return f"{value:.2f} {unit}"
    return f"{value / 1024:.2f} GiB"


def _format_flops(count: float) -> str:
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f} FLOP"


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of one training step, by kind, and its FLOPs (chapter 03; see :func:`memory_report`).

    Sharing a tensor shrinks the first three fields, the :attr:`parameter_side`; activations and
    FLOPs follow how often the tensors are used and stay the same.

    Attributes:
        weights: bytes of the parameters (each shared tensor once).
        gradients: bytes of their gradients.
        optimizer_state: bytes of the optimizer's per-parameter state (Adam: two moments).
        activations: bytes autograd keeps from the forward pass for the backward pass.
        flops: floating-point operations of one forward + backward pass (a multiply-add is 2).

    Examples:
        >>> from shared_lib.profiling import MemoryReport
        >>> report = MemoryReport(
        ...     weights=400, gradients=400, optimizer_state=800, activations=100, flops=10
        ... )
        >>> report.parameter_side, report.total
        (1600, 1700)
        >>> print(report)
        weights                 400 B
        gradients               400 B
        optimizer state         800 B
        activations             100 B
        total memory         1.66 KiB
        FLOPs per step        10 FLOP
    """

    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    flops: int

    @property
    def parameter_side(self) -> int:
        """Bytes that scale with the number of stored parameters (weights, grads and state)."""
        return self.weights + self.gradients + self.optimizer_state

    @property
    def total(self) -> int:
        """All four kinds of memory, in bytes (FLOPs are not memory and are left out)."""
        return self.parameter_side + self.activations

    def rows(self) -> list[tuple[str, str]]:
        """``(label, formatted value)`` pairs, in the order the report prints them."""
        return [
            ("weights", format_bytes(self.weights)),
            ("gradients", format_bytes(self.gradients)),
            ("optimizer state", format_bytes(self.optimizer_state)),
            ("activations", format_bytes(self.activations)),
            ("total memory", format_bytes(self.total)),
            ("FLOPs per step", _format_flops(self.flops)),
        ]

    def __str__(self) -> str:
        return "\n".join(f"{label:<16} {value:>12}" for label, value in self.rows())


def format_reports(reports: Mapping[str, MemoryReport], baseline: str | None = None) -> str:
    """A side-by-side table of several reports; with ``baseline``, each one's ratio to it.

    Chapter 03 prints shared and unshared models this way: the ratio column shows which kinds
    of memory sharing divides and which it leaves alone.

    Args:
        reports: name → report, one column each, in this order.
        baseline: the name of the report the others are divided by (one ratio column per other
            report), or ``None`` for no ratios.

    Returns:
        The table, one line per kind of memory and one for the FLOPs.

    Raises:
        ValueError: ``reports`` is empty, or ``baseline`` is not one of its names.
        TypeError: a value of ``reports`` is not a :class:`MemoryReport`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import format_reports, memory_report
        >>> layer = nn.Linear(8, 8)
        >>> models = {
        ...     "none": nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)),
        ...     "all": nn.Sequential(layer, nn.ReLU(), layer),  # one layer used twice
        ... }
        >>> x = torch.randn(4, 8)
        >>> reports = {name: memory_report(m, x, torch.sum) for name, m in models.items()}
        >>> print(format_reports(reports, baseline="none"))
        kind                    none          all   all / none
        weights                576 B        288 B        0.500
        gradients              576 B        288 B        0.500
        optimizer state     1.12 KiB        576 B        0.500
        activations            256 B        256 B        1.000
        total memory        2.50 KiB     1.38 KiB        0.550
        FLOPs per step    2.56 kFLOP   2.56 kFLOP        1.000
    """
    if not reports:
        raise ValueError("reports is empty: nothing to format")
    for name, report in reports.items():
        if not isinstance(report, MemoryReport):
            raise TypeError(f"reports[{name!r}] must be a MemoryReport, got {describe(report)}")
    if baseline is not None and baseline not in reports:
        raise ValueError(f"baseline must be one of {list(reports)}, got {baseline!r}")
    names = list(reports)
    others = [n for n in names if n != baseline] if baseline is not None else []
    width = max(13, *(len(n) + 2 for n in names))
    header = f"{'kind':<15}" + "".join(f"{n:>{width}}" for n in names)
    header += "".join(f"{f'{n} / {baseline}':>{width}}" for n in others)
    fields = ("weights", "gradients", "optimizer_state", "activations", "total", "flops")
    rows = {n: reports[n].rows() for n in names}
    lines = [header]
    for i, field in enumerate(fields):
        line = f"{rows[names[0]][i][0]:<15}" + "".join(f"{rows[n][i][1]:>{width}}" for n in names)
        for n in others:
            base = getattr(reports[baseline], field)
            ratio = getattr(reports[n], field) / base if base else float("nan")
            line += f"{ratio:>{width}.3f}"
        lines.append(line)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Argument checks shared by the public functions.


def _check_model(model: object) -> nn.Module:
    """``model`` if it is an nn.Module with a trainable parameter: a training step to profile."""
    check_module(model, "model")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters: there is no training step to profile")
    return model


def _as_args(inputs: object) -> tuple[torch.Tensor, ...]:
    """The model's positional arguments: one tensor, or a tuple/list of tensors."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs:
        for i, item in enumerate(inputs):
            if not isinstance(item, torch.Tensor):
                raise TypeError(f"inputs[{i}] must be a torch.Tensor, got {describe(item)}")
        return tuple(inputs)
    raise TypeError(
        f"inputs must be a tensor or a non-empty tuple/list of tensors, got {describe(inputs)}"
    )


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _loss(
    model: nn.Module, args: tuple[torch.Tensor, ...], loss_fn: LossFn, targets: object
) -> torch.Tensor:
    """``loss_fn(model(*args))``, or ``loss_fn(model(*args), targets)`` when targets are given."""
    outputs = model(*args)
    loss = loss_fn(outputs) if targets is None else loss_fn(outputs, targets)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        got = (
            f"shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        )
        raise ValueError(f"loss_fn must return a scalar tensor, got {got}")
    if not loss.requires_grad:
        raise ValueError("loss_fn returned a loss that does not depend on the model's parameters")
    return loss


@contextlib.contextmanager
def _no_side_effects(model: nn.Module):
    """Training mode during a measurement; afterwards restore the mode, buffers (e.g. BatchNorm
    running statistics) and the random-number state (dropout draws)."""
    was_training = model.training
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        model.train()
        try:
            yield
        finally:
            model.train(was_training)
            with torch.no_grad():
                for buffer, saved in buffers:
                    buffer.copy_(saved)


def _grad_targets(model: nn.Module, args: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """What a training step's backward computes gradients for: trainable parameters, and inputs
    that require grad."""
    return [p for p in model.parameters() if p.requires_grad] + [a for a in args if a.requires_grad]


# ---------------------------------------------------------------------------------------------
# Activations.


class _SavedTensors(contextlib.AbstractContextManager):
    """Adds up the storage of the tensors autograd saves while active: each storage once,
    the model's own parameters and buffers left out."""

    def __init__(self, model: nn.Module) -> None:
        self._owned = {
            t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())
        }
        self._storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._owned and storage.nbytes() > 0:
            self._storages[(str(tensor.device), pointer)] = storage.nbytes()
        return tensor

    def __enter__(self) -> _SavedTensors:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hooks.__exit__(*exc_info)

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())


def activation_bytes(
    model: nn.Module,
    inputs: Inputs,
    loss_fn: LossFn,
    targets: object = None,
    method: str = "auto",
) -> int:
    """Bytes of activation memory of one training step of ``model`` (chapter 03).

    ``method="saved"`` (the default on CPU and MPS) runs the forward pass under
    :func:`torch.autograd.graph.saved_tensors_hooks` and adds up the storage of every tensor
    autograd saves for the backward pass, each distinct storage once (a view and its base count
    once) and leaving out the model's own parameters and buffers: what the backward pass will
    read, the memory that grows with the batch. ``method="peak"`` (the default on CUDA) is the
    CUDA allocator's peak during the forward pass above what was allocated before it, so it also
    counts short-lived temporaries.

    Args:
        model: the model; put in training mode for the measurement and restored afterwards.
        inputs: a tensor, or a tuple/list of tensors passed as ``model(*inputs)``.
        loss_fn: ``loss_fn(outputs)``, or ``loss_fn(outputs, targets)`` when ``targets`` is given.
        targets: passed to ``loss_fn`` as its second argument unless ``None``.
        method: ``"auto"``, ``"saved"`` or ``"peak"``.

    Returns:
        The activation bytes of one forward pass (and the loss).

    Raises:
        TypeError: ``model`` is not an nn.Module, ``inputs`` not a tensor or a tuple/list of
            tensors, ``loss_fn`` not callable, or ``method`` not a string.
        ValueError: ``model`` has no trainable parameter, ``loss_fn`` does not return a scalar
            that depends on the parameters, ``method`` is unknown, or ``method="peak"`` for a
            model that is not on CUDA.

    Examples:
        A layer used twice saves its input at both uses: sharing leaves activations alone.

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import activation_bytes
        >>> layer = nn.Linear(8, 8)
        >>> shared = nn.Sequential(layer, nn.ReLU(), layer)
        >>> unshared = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        >>> x = torch.randn(4, 8)  # saved: x and the ReLU's output, 4 × 8 floats each
        >>> activation_bytes(shared, x, torch.sum), activation_bytes(unshared, x, torch.sum)
        (256, 256)
    """
    _check_model(model)
    args = _as_args(inputs)
    check_callable(loss_fn, "loss_fn")
    check_choice(method, "method", ACTIVATION_METHODS)
    device = _model_device(model)
    if method == "auto":
        method = "peak" if device.type == "cuda" else "saved"
    if method == "peak" and device.type != "cuda":
        raise ValueError(f"method='peak' needs a model on CUDA, got one on {device}")

    with _no_side_effects(model):
        if method == "peak":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            loss = _loss(model, args, loss_fn, targets)
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
            del loss
            return int(peak)

        counter = _SavedTensors(model)
        with counter:
            loss = _loss(model, args, loss_fn, targets)
        del loss  # frees the graph and what it saved
        return counter.bytes


# ---------------------------------------------------------------------------------------------
# FLOPs.


def _flop_mapping() -> dict:
    """FLOP formulas missing from FlopCounterMode: the CPU flash-attention kernels that
    ``F.scaled_dot_product_attention`` runs on the CPU (same formula as on CUDA)."""
    from torch.utils import flop_counter

    aten = torch.ops.aten
    mapping = {}
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and hasattr(flop_counter, "sdpa_flop_count"):

        def forward_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query, key, value)

        mapping[forward] = forward_flops
    if backward is not None and hasattr(flop_counter, "sdpa_backward_flop_count"):

        def backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)

        mapping[backward] = backward_flops
    return mapping


def _count_step(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    loss_fn: LossFn,
    targets: object,
    saved: _SavedTensors | None = None,
) -> tuple[int, int]:
    """Forward and backward FLOPs of one step; with ``saved``, count saved tensors in the same
    forward pass."""
    from torch.utils.flop_counter import FlopCounterMode

    with _no_side_effects(model), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
        with counter, saved if saved is not None else contextlib.nullcontext():
            loss = _loss(model, args, loss_fn, targets)
        forward = counter.get_total_flops()
        counter = FlopCounterMode(display=False, custom_mapping=_flop_mapping())
        with counter:
            torch.autograd.grad(loss, _grad_targets(model, args), allow_unused=True)
        backward = counter.get_total_flops()
    return int(forward), int(backward)


def step_flops(
    model: nn.Module, inputs: Inputs, loss_fn: LossFn, targets: object = None
) -> tuple[int, int]:
    """FLOPs of one training step's forward and backward passes, as ``(forward, backward)``.

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`, which counts matrix
    products and convolutions (a multiply-add is 2 FLOPs; element-wise work is not counted).
    The backward pass computes what a training step needs: gradients of the trainable
    parameters and of inputs that require grad. The model's ``.grad`` fields are not touched.
    FlopCounterMode's table and warnings are silenced. Used in chapter 03.

    FLOPs follow how often a weight is *used*: a layer applied twice costs twice, whether its
    two uses share one tensor or not.

    Args:
        model: the model; put in training mode for the count and restored afterwards.
        inputs: a tensor, or a tuple/list of tensors passed as ``model(*inputs)``.
        loss_fn: ``loss_fn(outputs)``, or ``loss_fn(outputs, targets)`` when ``targets`` is given.
        targets: passed to ``loss_fn`` as its second argument unless ``None``.

    Returns:
        ``(forward, backward)``: the FLOPs of the forward pass (with the loss) and of the
        backward pass.

    Raises:
        TypeError: ``model`` is not an nn.Module, ``inputs`` not a tensor or a tuple/list of
            tensors, or ``loss_fn`` not callable.
        ValueError: ``model`` has no trainable parameter, or ``loss_fn`` does not return a
            scalar that depends on the parameters.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import step_flops
        >>> layer = nn.Linear(8, 8)
        >>> shared = nn.Sequential(layer, nn.ReLU(), layer)  # one layer used twice
        >>> unshared = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        >>> x = torch.randn(4, 8)  # forward: 2 × 4 × 8 × 8 = 512 FLOPs per use
        >>> step_flops(shared, x, torch.sum), step_flops(unshared, x, torch.sum)
        ((1024, 1536), (1024, 1536))
    """
    _check_model(model)
    args = _as_args(inputs)
    check_callable(loss_fn, "loss_fn")
    return _count_step(model, args, loss_fn, targets)


def memory_report(
    model: nn.Module,
    inputs: Inputs,
    loss_fn: LossFn,
    optimizer: str = "adam",
    *,
    targets: object = None,
    method: str = "auto",
) -> MemoryReport:
    """Weights, gradients, optimizer state, activations and FLOPs of one training step.

    The parameter side comes from :func:`shared_lib.counting.parameter_memory` (each shared
    tensor once); activations from :func:`activation_bytes`; FLOPs (forward + backward) from
    :func:`step_flops`. Used in chapter 03 to compare shared and unshared models.

    Args:
        model: the model to profile.
        inputs: a tensor, or a tuple/list of tensors passed as ``model(*inputs)``.
        loss_fn: ``loss_fn(outputs)``, or ``loss_fn(outputs, targets)`` when ``targets`` is given.
        optimizer: a key of :data:`shared_lib.counting.OPTIMIZER_STATES` (``"adam"``: two
            moments per parameter).
        targets: passed to ``loss_fn`` as its second argument unless ``None``.
        method: how to measure activations (see :func:`activation_bytes`).

    Returns:
        The bytes of each kind and the FLOPs, as a :class:`MemoryReport`.

    Raises:
        TypeError: ``model`` is not an nn.Module, ``inputs`` not a tensor or a tuple/list of
            tensors, ``loss_fn`` not callable, or ``optimizer`` or ``method`` not a string.
        ValueError: ``model`` has no trainable parameter, ``optimizer`` or ``method`` is
            unknown, ``method="peak"`` for a model that is not on CUDA, or ``loss_fn`` does not
            return a scalar that depends on the parameters.

    Examples:
        A layer used twice halves weights, gradients and optimizer state, but not the
        activations or the FLOPs:

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import memory_report
        >>> layer = nn.Linear(8, 8)
        >>> shared = nn.Sequential(layer, nn.ReLU(), layer)  # one layer used twice
        >>> unshared = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8))
        >>> x = torch.randn(4, 8)
        >>> a, b = memory_report(shared, x, torch.sum), memory_report(unshared, x, torch.sum)
        >>> for kind in ("weights", "gradients", "optimizer_state", "activations", "flops"):
        ...     print(f"{kind:<16}", getattr(a, kind), getattr(b, kind))
        weights          288 576
        gradients        288 576
        optimizer_state  576 1152
        activations      256 256
        flops            2560 2560
    """
    _check_model(model)
    params = parameter_memory(model, optimizer)
    args = _as_args(inputs)
    check_callable(loss_fn, "loss_fn")
    if method == "saved" or (method == "auto" and _model_device(model).type != "cuda"):
        saved = _SavedTensors(model)  # one pass counts both the FLOPs and the saved tensors
        forward, backward = _count_step(model, args, loss_fn, targets, saved)
        activations = saved.bytes
    else:
        activations = activation_bytes(model, args, loss_fn, targets, method)
        forward, backward = _count_step(model, args, loss_fn, targets)
    return MemoryReport(
        weights=params.weights,
        gradients=params.gradients,
        optimizer_state=params.optimizer_state,
        activations=activations,
        flops=forward + backward,
    )


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes an optimizer really holds as per-parameter state (measured, not predicted).

    Adds up every tensor with at least one dimension in ``optimizer.state`` (Adam's
    ``exp_avg`` and ``exp_avg_sq``); scalar bookkeeping such as Adam's ``step`` counter (a few
    bytes per tensor) is left out. Empty until the first ``step()``. Chapter 03 checks with it
    that the state predicted by :func:`shared_lib.counting.parameter_memory` is what the
    optimizer allocates: one state per stored tensor, however often the tensor is used.

    Args:
        optimizer: the optimizer to measure.

    Returns:
        The bytes of its per-parameter state tensors (0 before the first step).

    Raises:
        TypeError: ``optimizer`` is not a :class:`torch.optim.Optimizer`.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import optimizer_state_bytes
        >>> layer = nn.Linear(4, 4)  # 20 parameters
        >>> model = nn.Sequential(layer, nn.ReLU(), layer)  # used twice, stored once
        >>> optimizer = torch.optim.Adam(model.parameters())
        >>> model(torch.randn(2, 4)).sum().backward()
        >>> optimizer_state_bytes(optimizer)  # Adam allocates its state at the first step
        0
        >>> optimizer.step()
        >>> optimizer_state_bytes(optimizer)  # two moments of 20 floats: one layer's, not two
        160
    """
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    total = 0
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                total += value.numel() * value.element_size()
    return total


# ---------------------------------------------------------------------------------------------
# Time.


def _timing_setup(
    model: nn.Module,
    inputs: Inputs,
    targets: object,
    optimizer: object,
    loss_fn: object,
    device: torch.device | str | None,
) -> tuple[tuple[torch.Tensor, ...], object, torch.device]:
    _check_model(model)
    args = _as_args(inputs)
    check_callable(loss_fn, "loss_fn")
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    where = _model_device(model)
    device = torch.device(device) if device is not None else where
    if device.type != where.type:
        raise ValueError(f"device is {device} but the model's parameters are on {where}")
    args = tuple(a.to(device) for a in args)
    if isinstance(targets, torch.Tensor):
        targets = targets.to(device)
    return args, targets, device


#: What :func:`step_time` may time, and with which clock.
STEP_PARTS = ("step", "forward_backward", "optimizer")


CLOCKS = ("wall", "process")


def _step_parts(
    model: nn.Module,
    args: tuple[torch.Tensor, ...],
    targets: object,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
) -> dict[str, Callable[[], None]]:
    """The three timeable parts of a training step, as functions of no argument."""

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        _loss(model, args, loss_fn, targets).backward()

    def whole_step() -> None:
        forward_backward()
        optimizer.step()

    return {"step": whole_step, "forward_backward": forward_backward, "optimizer": optimizer.step}


def _check_part_and_clock(part: str, clock: str, device: torch.device) -> None:
    """``part`` and ``clock`` are known, and the process clock is used on the CPU only."""
    check_choice(part, "part", STEP_PARTS)
    check_choice(clock, "clock", CLOCKS)
    if clock == "process" and device.type != "cpu":
        raise ValueError(f"clock='process' measures CPU work; the model is on {device}")


def step_time(
    model: nn.Module,
    inputs: Inputs,
    targets: object,
    optimizer: torch.optim.Optimizer,
    device: torch.device | str | None = None,
    warmup: int = 2,
    repeats: int = 5,
    loss_fn: LossFn = F.cross_entropy,
    part: str = "step",
    clock: str = "wall",
) -> float:
    """Median seconds of one training step, or of one part of it (chapter 03).

    ``part="step"`` times the whole step (zero grads, forward, loss, backward, optimizer
    update); ``"forward_backward"`` leaves the update out; ``"optimizer"`` times
    ``optimizer.step()`` alone, after one backward pass has filled the gradients. The forward
    and backward cost follows how often the weights are *used*; the update's cost follows how
    many are *stored* — the part that sharing shrinks.

    With ``clock="wall"`` the time comes from :func:`shared_lib.training.benchmark`
    (``warmup`` untimed calls, median of ``repeats``, the device synchronized around each).
    ``clock="process"`` (CPU only) counts the CPU time of this process instead: on a machine
    shared with other jobs, wall-clock time also counts the time spent waiting for a core, and
    the CPU time of a single-threaded run is the steadier measure of the work. The model
    trains while it is timed: its weights and optimizer state change. To compare models, prefer
    :func:`compare_step_times`, which measures them in turns.

    Args:
        model: the model, already on ``device``.
        inputs: a tensor, or a tuple/list of tensors passed as ``model(*inputs)``.
        targets: passed to ``loss_fn`` as ``loss_fn(outputs, targets)``; ``None`` calls
            ``loss_fn(outputs)``.
        optimizer: an optimizer over the model's parameters.
        device: where to run; defaults to the device of the model's parameters.
        warmup: untimed calls first (allocator, kernel choice, lazy optimizer state).
        repeats: timed calls; the median is returned.
        loss_fn: the loss (cross-entropy by default).
        part: ``"step"``, ``"forward_backward"`` or ``"optimizer"``.
        clock: ``"wall"`` or ``"process"``.

    Returns:
        The median time of one call of ``part``, in seconds.

    Raises:
        TypeError: ``model`` is not an nn.Module, ``inputs`` not a tensor or a tuple/list of
            tensors, ``loss_fn`` not callable, ``optimizer`` not an optimizer, ``part`` or
            ``clock`` not a string, or ``warmup``/``repeats`` not ints.
        ValueError: ``model`` has no trainable parameter, ``device`` is not where the model
            is, ``part`` or ``clock`` is unknown, ``clock="process"`` off the CPU,
            ``warmup < 0``, ``repeats < 1``, or ``loss_fn`` does not return a scalar that
            depends on the parameters.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import step_time
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y = torch.randn(2, 4), torch.tensor([0, 2])
        >>> seconds = step_time(model, x, y, optimizer, warmup=1, repeats=2, part="optimizer")
        >>> seconds > 0
        True
    """
    args, targets, device = _timing_setup(model, inputs, targets, optimizer, loss_fn, device)
    _check_part_and_clock(part, clock, device)
    model.train()
    parts = _step_parts(model, args, targets, optimizer, loss_fn)
    if part == "optimizer":
        parts["forward_backward"]()
    return benchmark(parts[part], device=device, warmup=warmup, repeats=repeats, clock=clock)


def compare_step_times(
    runs: Mapping[Hashable, tuple],
    inputs: Inputs | None = None,
    targets: object = None,
    loss_fn: LossFn = F.cross_entropy,
    parts: Sequence[str] = STEP_PARTS,
    warmup: int = 1,
    repeats: int = 5,
    clock: str = "wall",
) -> dict[tuple[Hashable, str], float]:
    """Median seconds of each part of a training step for several runs, measured in turns.

    Each repeat times one call of every (run, part) in turn, so that a slow moment of a busy
    machine hits all runs alike; timing one run after the other instead lets such moments decide
    the ratio. Chapter 03 compares shared and unshared encoders, and batch sizes, this way.
    Parts and clocks are those of :func:`step_time`. The ``"optimizer"`` part reuses the
    gradients left by an earlier part of the same round (or computes them once if there are
    none): the update's cost does not depend on their values.

    Args:
        runs: key → ``(model, optimizer)``, which uses the common ``inputs`` and ``targets``,
            or ``(model, optimizer, inputs, targets)`` with its own (e.g. another batch size).
        inputs: the runs' common inputs, as in :func:`step_time`; may be ``None`` when every
            run brings its own.
        targets: the runs' common targets, as in :func:`step_time`.
        loss_fn: the loss of every run (cross-entropy by default).
        parts: which parts to time (any of ``"step"``, ``"forward_backward"``, ``"optimizer"``).
        warmup: untimed rounds first.
        repeats: timed rounds; each (run, part) gets the median of its ``repeats`` times.
        clock: ``"wall"`` (device synchronized around each call) or ``"process"`` (CPU only).

    Returns:
        ``{(key, part): seconds}``.

    Raises:
        TypeError: a run is not a 2- or 4-tuple, ``warmup``/``repeats`` are not ints, or a
            run's model, optimizer, inputs, ``loss_fn``, a part or ``clock`` has the wrong type
            (as in :func:`step_time`).
        ValueError: ``runs`` or ``parts`` is empty, a run has no inputs, ``warmup < 0``,
            ``repeats < 1``, or a run or part fails :func:`step_time`'s value checks.

    Examples:
        The update of a layer used twice touches its weights once; its forward and backward
        passes use them twice. Both runs are timed in turns:

        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.profiling import compare_step_times
        >>> layer = nn.Linear(4, 4)
        >>> models = {
        ...     "shared": nn.Sequential(layer, nn.ReLU(), layer),
        ...     "unshared": nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4)),
        ... }
        >>> runs = {k: (m, torch.optim.Adam(m.parameters())) for k, m in models.items()}
        >>> x, y = torch.randn(2, 4), torch.tensor([0, 3])
        >>> times = compare_step_times(runs, x, y, parts=("step", "optimizer"), repeats=2)
        >>> for key in sorted(times):
        ...     print(key, times[key] > 0)
        ('shared', 'optimizer') True
        ('shared', 'step') True
        ('unshared', 'optimizer') True
        ('unshared', 'step') True
    """
    if not runs:
        raise ValueError("runs must name at least one (model, optimizer) pair")
    parts = tuple(parts)
    if not parts:
        raise ValueError("parts must name at least one part")
    check_int(warmup, "warmup", 0)
    check_int(repeats, "repeats", 1)
    prepared = {}
    for key, run in runs.items():
        if not isinstance(run, tuple) or len(run) not in (2, 4):
            raise TypeError(
                f"runs[{key!r}] must be (model, optimizer) or (model, optimizer, inputs, targets)"
            )
        model, optimizer = run[:2]
        run_inputs, run_targets = run[2:] if len(run) == 4 else (inputs, targets)
        if run_inputs is None:
            raise ValueError(f"runs[{key!r}] has no inputs: pass inputs, or give the run its own")
        args, run_targets, device = _timing_setup(
            model, run_inputs, run_targets, optimizer, loss_fn, None
        )
        for part in parts:
            _check_part_and_clock(part, clock, device)
        functions = _step_parts(model, args, run_targets, optimizer, loss_fn)
        prepared[key] = (model, functions, device)

    def timed(fn: Callable[[], None], device: torch.device) -> float:
        if clock == "process":
            start = time.process_time()
            fn()
            return time.process_time() - start
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        return time.perf_counter() - start

    samples: dict[tuple[Hashable, str], list[float]] = {(k, p): [] for k in runs for p in parts}
    for round_ in range(warmup + repeats):
        for key, (model, functions, device) in prepared.items():
            model.train()
            for part in parts:
                trainable = [p for p in model.parameters() if p.requires_grad]
                if part == "optimizer" and any(p.grad is None for p in trainable):
                    functions["forward_backward"]()  # the update needs gradients to apply
                seconds = timed(functions[part], device)
                if round_ >= warmup:
                    samples[key, part].append(seconds)
    return {key: statistics.median(values) for key, values in samples.items()}
