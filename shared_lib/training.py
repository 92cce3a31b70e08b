"""Devices, seeds, timing that respects CUDA's asynchrony, and a small ``fit`` loop.

Nothing here runs at import: seeding and global flags happen only when you call them.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = [
    "History",
    "adam_on_random_batches",
    "autocast_for",
    "benchmark",
    "evaluate",
    "fit",
    "get_device",
    "seed_everything",
    "synchronize",
]


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the environment variable ``BOOK_DEVICE``) forces one, e.g. ``"cpu"``.
    """
    choice = prefer if prefer is not None else os.environ.get("BOOK_DEVICE")
    if choice is not None:
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={choice!r} but CUDA is not available on this machine")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"prefer={choice!r} but MPS is not available on this machine")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python, NumPy and PyTorch (all devices); optionally ask for deterministic kernels."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work, so that a wall-clock time measures the work, not its launch."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type == "cuda":
        if torch.cuda.is_available():
            torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def autocast_for(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU runs stay in float32)."""
    device = torch.device(device)
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def benchmark(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    warmup: int = 3,
    repeats: int = 10,
    clock: str = "wall",
) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls, synchronizing the device.

    ``clock="wall"`` measures elapsed time; ``clock="process"`` the CPU time of this process
    (all its threads), which waiting for a busy machine's cores does not inflate.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    if clock not in ("wall", "process"):
        raise ValueError(f"clock must be 'wall' or 'process', got {clock!r}")
    now = time.perf_counter if clock == "wall" else time.process_time
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = now()
        fn()
        synchronize(device)
        times.append(now() - start)
    return statistics.median(times)


@dataclass
class History:
    """Per-epoch record of a :func:`fit` run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def _to(batch: Iterable[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    non_blocking = device.type == "cuda"
    return [t.to(device, non_blocking=non_blocking) for t in batch]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str | None = None,
    amp: bool = True,
) -> tuple[float, float]:
    """Mean loss and accuracy (argmax of the last dimension) of ``model`` over ``loader``."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = _to((inputs, targets), device)
        with autocast_for(device, amp):
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        total_loss += loss.item() * len(targets)
        correct += (outputs.argmax(-1) == targets).sum().item()
        count += len(targets)
    model.train(was_training)
    if count == 0:
        raise ValueError("loader yielded no examples")
    return total_loss / count, correct / count


def fit(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
    epochs: int = 1,
    val_loader: Iterable | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    progress: bool = False,
) -> History:
    """Train ``model`` for ``epochs`` and return a :class:`History`.

    On CUDA the forward pass runs under bf16 autocast (``amp=True``); on the CPU and MPS it runs
    in float32. Epoch times synchronize the device first, so they are true wall-clock times.
    ``progress=True`` shows a tqdm bar (off by default so that pages and logs stay clean).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive int, got {epochs!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    history = History()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="epochs")
    for _ in range(epochs):
        model.train()
        synchronize(device)
        start = time.perf_counter()
        total_loss, count = 0.0, 0
        for inputs, targets in train_loader:
            inputs, targets = _to((inputs, targets), device)
            with autocast_for(device, amp):
                loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(targets)
            count += len(targets)
        synchronize(device)
        history.epoch_seconds.append(time.perf_counter() - start)
        history.train_loss.append(total_loss / max(count, 1))
        if val_loader is not None:
            val_loss, val_accuracy = evaluate(model, val_loader, loss_fn, device, amp)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_accuracy)
        if bar is not None:
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}")
            bar.update()
    if bar is not None:
        bar.close()
    return history


def adam_on_random_batches(
    parameters: Iterable[torch.Tensor],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """``steps`` Adam steps, each on ``batch_loss(rows)`` for ``batch_size`` row indices drawn
    from ``range(n)`` (with replacement) by ``generator``: the loop of chapter 08's demos."""
    optimizer = torch.optim.Adam(parameters, lr=lr)
    for _ in range(steps):
        rows = torch.randint(n, (batch_size,), generator=generator)
        loss = batch_loss(rows)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
