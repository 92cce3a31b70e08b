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
    """``1536`` → ``'1.50 KiB'``: a byte count in binary units, three significant digits."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def _format_flops(count: float) -> str:
    for unit, scale in (("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count:.0f} FLOP"


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of one training step, by kind, and its FLOPs (see :func:`memory_report`).

    Attributes:
        weights: bytes of the parameters (each shared tensor once).
        gradients: bytes of their gradients.
        optimizer_state: bytes of the optimizer's per-parameter state (Adam: two moments).
        activations: bytes autograd keeps from the forward pass for the backward pass.
        flops: floating-point operations of one forward + backward pass (a multiply-add is 2).
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

    >>> a = MemoryReport(400, 400, 800, 100, 10)
    >>> print(format_reports({"a": a, "b": MemoryReport(100, 100, 200, 100, 10)}, baseline="a"))
    kind                       a            b        b / a
    weights                400 B        100 B        0.250
    gradients              400 B        100 B        0.250
    optimizer state        800 B        200 B        0.250
    activations            100 B        100 B        1.000
    total memory        1.66 KiB        500 B        0.294
    FLOPs per step       10 FLOP      10 FLOP        1.000
    """
    if not reports:
        raise ValueError("reports is empty: nothing to format")
    for name, report in reports.items():
        if not isinstance(report, MemoryReport):
            raise TypeError(
                f"reports[{name!r}] must be a MemoryReport, got {type(report).__name__}"
            )
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
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
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
                raise TypeError(f"inputs[{i}] must be a torch.Tensor, got {type(item).__name__}")
        return tuple(inputs)
    raise TypeError(
        f"inputs must be a tensor or a non-empty tuple/list of tensors, got {type(inputs).__name__}"
    )


def _check_loss_fn(loss_fn: object) -> LossFn:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    return loss_fn


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
    """
    _check_model(model)
    args = _as_args(inputs)
    _check_loss_fn(loss_fn)
    if method not in ACTIVATION_METHODS:
        raise ValueError(f"method must be one of {ACTIVATION_METHODS}, got {method!r}")
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
    """
    _check_model(model)
    args = _as_args(inputs)
    _check_loss_fn(loss_fn)
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

    >>> report = memory_report(nn.Linear(64, 64), torch.randn(8, 64), lambda y: y.sum())
    >>> report.weights, report.gradients, report.optimizer_state, report.activations
    (16640, 16640, 33280, 2048)
    """
    _check_model(model)
    params = parameter_memory(model, optimizer)
    args = _as_args(inputs)
    _check_loss_fn(loss_fn)
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
    bytes per tensor) is left out. Empty until the first ``step()``.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
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
    _check_loss_fn(loss_fn)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
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
    if part not in STEP_PARTS:
        raise ValueError(f"part must be one of {STEP_PARTS}, got {part!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
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
        inputs, targets, loss_fn: as in :func:`step_time`.
        parts: which parts to time (any of ``"step"``, ``"forward_backward"``, ``"optimizer"``).
        warmup: untimed rounds first.
        repeats: timed rounds; each (run, part) gets the median of its ``repeats`` times.
        clock: ``"wall"`` (device synchronized around each call) or ``"process"`` (CPU only).

    Returns:
        ``{(key, part): seconds}``.
    """
    if not runs:
        raise ValueError("runs must name at least one (model, optimizer) pair")
    parts = tuple(parts)
    if not parts:
        raise ValueError("parts must name at least one part")
    _check_int_arg(warmup, "warmup", 0)
    _check_int_arg(repeats, "repeats", 1)
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


def _check_int_arg(value: object, argument: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{argument} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{argument} must be >= {minimum}, got {value}")
