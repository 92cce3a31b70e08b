"""Devices, seeds, timing that respects CUDA's asynchrony, and the book's one training loop.

:func:`train_steps` is the loop every experiment of the book uses (one optimizer step per batch,
optional tqdm progress); :func:`fit` runs it epoch by epoch over a data loader with validation,
and :func:`adam_on_random_batches` over :func:`random_batches`. Nothing here runs at import:
seeding and global flags happen only when you call them.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from shared_lib._validation import (
    check_bool,
    check_callable,
    check_choice,
    check_instance,
    check_int,
    describe,
)

#: Whatever one training step consumes: a tensor, a tuple of tensors, indices, a step number.
Batch = TypeVar("Batch")

__all__ = [
    "History",
    "adam_on_random_batches",
    "autocast_for",
    "benchmark",
    "book_seed",
    "derive_seed",
    "evaluate",
    "fit",
    "get_device",
    "random_batches",
    "seed_everything",
    "synchronize",
    "to_device",
    "train_steps",
]


def get_device(prefer: str | None = None) -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    Args:
        prefer: a device to use instead, e.g. ``"cpu"``; when ``None``, the environment
            variable ``BOOK_DEVICE`` may name one.

    Returns:
        The device.

    Raises:
        TypeError: ``prefer`` is not a string (or a ``torch.device``).
        ValueError: ``prefer`` (or ``BOOK_DEVICE``) names no device torch knows, or the device
            asked for (CUDA or MPS) is not available on this machine.

    Examples:
        >>> from shared_lib.training import get_device
        >>> get_device("cpu")
        device(type='cpu')
    """
    if prefer is not None:
        check_instance(prefer, "prefer", (str, torch.device), "device string such as 'cpu'")
        choice, argument = prefer, "prefer"
    else:
        choice, argument = os.environ.get("BOOK_DEVICE"), "BOOK_DEVICE"
    if choice is not None:
        try:
            device = torch.device(choice)
        except RuntimeError as error:
            raise ValueError(
                f"{argument} must be a device: 'cpu', 'cuda', 'cuda:<index>' or 'mps' "
                f"(or another torch device type); got {choice!r}"
            ) from error
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
    """Seed Python, NumPy and PyTorch (all devices); optionally ask for deterministic kernels.

    Args:
        seed: the seed (any int; NumPy gets it modulo 2**32).
        deterministic: also ask PyTorch for deterministic algorithms (a global setting that
            stays on; it warns instead of failing where none exists).

    Returns:
        ``seed``.

    Raises:
        TypeError: ``seed`` is not an int, or ``deterministic`` not a bool.

    Examples:
        >>> from shared_lib.training import seed_everything
        >>> import torch
        >>> _ = seed_everything(0); first = torch.rand(2)
        >>> _ = seed_everything(0); torch.equal(first, torch.rand(2))
        True
    """
    check_int(seed, "seed")
    check_bool(deterministic, "deterministic")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


#: The environment variable that holds a book run's base seed.
BOOK_SEED_VARIABLE = "BOOK_SEED"


def book_seed() -> int:
    """The base seed of this run: the environment variable ``BOOK_SEED``, 0 when it is unset.

    Every random choice in a chapter derives from it (:func:`derive_seed`), so running a chapter
    with another ``BOOK_SEED`` is a fair replication of all its experiments at once.

    Returns:
        The base seed, an int ≥ 0.

    Raises:
        ValueError: ``BOOK_SEED`` is set to something that is not a whole number ≥ 0.

    Examples:
        >>> import os
        >>> from shared_lib.training import book_seed
        >>> os.environ.pop("BOOK_SEED", None) and None
        >>> book_seed()
        0
    """
    text = os.environ.get(BOOK_SEED_VARIABLE, "").strip()
    if not text:
        return 0
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise ValueError(
            f"the environment variable {BOOK_SEED_VARIABLE} must be a whole number >= 0 "
            f"(e.g. BOOK_SEED=3); got {text!r}. Unset it for the default seed 0."
        )
    return seed


def derive_seed(*labels: str | int, base: int | None = None) -> int:
    """A seed for one random choice, derived from the base seed and labels that name the choice.

    The same base and labels always give the same seed, on every machine and Python (a hash of
    the labels, not Python's salted ``hash``); different labels give unrelated seeds, so two
    experiments never share a random stream by accident, and changing the base seed changes
    every one of them.

    Args:
        *labels: what the seed is for, e.g. ``"parity", "gru", 2`` for the third GRU run of the
            parity experiment; at least one, each a string or an int.
        base: the base seed; ``None`` means :func:`book_seed` (the ``BOOK_SEED`` variable).

    Returns:
        A seed in ``[0, 2**31)``.

    Raises:
        TypeError: no label, a label that is neither a string nor an int, or ``base`` not an int.
        ValueError: ``base`` is negative.

    Examples:
        >>> from shared_lib.training import derive_seed
        >>> derive_seed("parity", 0, base=0) == derive_seed("parity", 0, base=0)
        True
        >>> derive_seed("parity", 0, base=0) != derive_seed("parity", 1, base=0)
        True
        >>> derive_seed("parity", 0, base=0) != derive_seed("parity", 0, base=1)
        True
    """
    if not labels:
        raise TypeError(
            "derive_seed needs at least one label naming the random choice, "
            "e.g. derive_seed('parity', 0)"
        )
    for position, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, (str, int)):
            raise TypeError(
                f"labels[{position}] must be a string or an int naming the random choice; "
                f"got {describe(label)}"
            )
    base = book_seed() if base is None else check_int(base, "base", minimum=0)
    text = "\x1f".join([str(base), *(f"{type(label).__name__}:{label}" for label in labels)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for queued GPU work, so that a wall-clock time measures the work, not its launch.

    A no-op on the CPU. CUDA kernels are launched asynchronously: without this, a timer around
    a step measures how long it took to *queue* the step.

    Args:
        device: the device to wait for; ``None`` waits for the current CUDA device if any.

    Examples:
        >>> from shared_lib.training import synchronize
        >>> synchronize("cpu")  # returns at once
    """
    device = torch.device(device) if device is not None else None
    if device is None or device.type == "cuda":
        if torch.cuda.is_available():
            torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def autocast_for(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU runs stay in float32).

    Args:
        device: where the model runs.
        enabled: ``False`` gives the no-op context everywhere.

    Returns:
        A context manager.

    Raises:
        TypeError: ``enabled`` is not a bool.

    Examples:
        >>> from shared_lib.training import autocast_for
        >>> import torch
        >>> with autocast_for("cpu"):
        ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
        torch.float32
    """
    check_bool(enabled, "enabled")
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

    Args:
        fn: what to time, a function of no argument.
        device: the device ``fn`` runs on (synchronized before and after every call).
        warmup: calls made first and not timed (caches, lazy initialisation, autotuning).
        repeats: timed calls; the median is returned.
        clock: ``"wall"`` measures elapsed time; ``"process"`` the CPU time of this process
            (all its threads), which waiting for a busy machine's cores does not inflate.

    Returns:
        The median time of one call, in seconds.

    Raises:
        TypeError: ``fn`` is not callable, or ``warmup``/``repeats`` are not ints.
        ValueError: ``warmup < 0``, ``repeats < 1`` or an unknown ``clock``.

    Examples:
        >>> from shared_lib.training import benchmark
        >>> import torch
        >>> seconds = benchmark(lambda: torch.ones(64, 64) @ torch.ones(64, 64), repeats=3)
        >>> 0 < seconds < 1
        True
    """
    check_callable(fn, "fn")
    check_int(warmup, "warmup", 0)
    check_int(repeats, "repeats", 1)
    check_choice(clock, "clock", ("wall", "process"))
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
    """Per-epoch record of a :func:`fit` run.

    Attributes:
        train_loss: mean training loss of each epoch (weighted by batch size).
        val_loss: mean validation loss after each epoch (empty without a validation loader).
        val_accuracy: validation accuracy after each epoch.
        epoch_seconds: wall-clock seconds of each epoch's training (device synchronized).

    Examples:
        >>> from shared_lib.training import History
        >>> History().train_loss
        []
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)


def to_device(batch: Iterable[torch.Tensor], device: torch.device | str) -> list[torch.Tensor]:
    """Every tensor of ``batch`` on ``device`` (copies to CUDA are non-blocking).

    Args:
        batch: the tensors of one batch, e.g. ``(inputs, targets)``.
        device: where they go.

    Returns:
        The moved tensors, in order.

    Examples:
        >>> from shared_lib.training import to_device
        >>> import torch
        >>> [t.device.type for t in to_device((torch.ones(2), torch.zeros(2)), "cpu")]
        ['cpu', 'cpu']
    """
    device = torch.device(device)
    non_blocking = device.type == "cuda"
    return [t.to(device, non_blocking=non_blocking) for t in batch]


def train_steps(
    optimizer: torch.optim.Optimizer,
    batches: Iterable[Batch],
    batch_loss: Callable[[Batch], torch.Tensor],
    progress: bool = False,
    description: str = "steps",
) -> list[float]:
    """The book's one training loop: one optimizer step per batch.

    For every item of ``batches``: ``loss = batch_loss(batch)``, the gradients are zeroed,
    ``loss.backward()``, ``optimizer.step()``. ``batches`` may be any iterable, drawn lazily (a
    generator that samples the next mini-batch only when the loop asks for it keeps the random
    draws in the same order as a hand-written loop), and ``batch_loss`` may do anything a step
    needs before the backward pass (move the batch to a device, run under autocast, record a
    measurement). The losses are gathered without synchronizing the device at every step.

    Args:
        optimizer: the optimizer of the parameters that ``batch_loss`` depends on.
        batches: what each step trains on (tensors, tuples, indices or just step numbers).
        batch_loss: the scalar loss of one batch.
        progress: show a tqdm progress bar.
        description: the progress bar's label.

    Returns:
        The loss of every step, as Python floats, in order.

    Raises:
        TypeError: ``optimizer`` is not a torch optimizer, or ``batch_loss`` is not callable.
        ValueError: ``batch_loss`` returned something other than a scalar tensor.

    Examples:
        >>> from shared_lib.training import train_steps
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(1, 1)
        >>> x = torch.linspace(-1, 1, 16)[:, None]
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        >>> def mse(rows):
        ...     return nn.functional.mse_loss(model(x[rows]), 3 * x[rows])
        >>> losses = train_steps(optimizer, [torch.arange(16)] * 50, mse)
        >>> len(losses), losses[-1] < 1e-3 < losses[0]
        (50, True)
    """
    check_instance(optimizer, "optimizer", torch.optim.Optimizer, "torch.optim.Optimizer")
    check_callable(batch_loss, "batch_loss")
    check_bool(progress, "progress")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(batches) if isinstance(batches, Sized) else None
        batches = bar = tqdm(batches, total=total, desc=description)
    losses = []
    for batch in batches:
        loss = batch_loss(batch)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise ValueError(f"batch_loss must return a scalar tensor, got {describe(loss)}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        if bar is not None:
            bar.set_postfix(loss=f"{losses[-1].item():.3f}", refresh=False)
    # float64 holds every float32/bf16 value exactly: the same numbers as loss.item() per step.
    return torch.stack(losses).cpu().double().tolist() if losses else []


def random_batches(
    n: int, batch_size: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` mini-batches of ``batch_size`` row indices drawn from ``range(n)`` with
    replacement, each drawn only when asked for (so that other draws between steps keep their
    order).

    Args:
        n: number of rows to draw from.
        batch_size: rows per batch.
        steps: number of batches.
        generator: the seeded source of the draws.

    Yields:
        A ``(batch_size,)`` tensor of row indices.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``n``, ``batch_size`` or ``steps`` is below 1.

    Examples:
        >>> from shared_lib.training import random_batches
        >>> import torch
        >>> batches = random_batches(10, 4, 3, torch.Generator().manual_seed(0))
        >>> [tuple(rows.shape) for rows in batches]
        [(4,), (4,), (4,)]
    """
    check_int(n, "n", 1)
    check_int(batch_size, "batch_size", 1)
    check_int(steps, "steps", 0)
    check_instance(generator, "generator", torch.Generator, "torch.Generator")
    for _ in range(steps):
        yield torch.randint(n, (batch_size,), generator=generator)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str | None = None,
    amp: bool = True,
) -> tuple[float, float]:
    """Mean loss and accuracy (argmax of the last dimension) of ``model`` over ``loader``.

    The model is put in eval mode for the pass and back in the mode it had after.

    Args:
        model: a classifier; its outputs' last dimension holds the class scores.
        loader: batches of ``(inputs, targets)``.
        loss_fn: ``loss_fn(outputs, targets)``, a mean over the batch.
        device: where to run; by default where the model's parameters are.
        amp: bf16 autocast on CUDA (no effect elsewhere).

    Returns:
        ``(mean loss, accuracy)`` over all examples.

    Raises:
        TypeError: ``amp`` is not a bool.
        ValueError: ``loader`` yielded no example.

    Examples:
        >>> from shared_lib.training import evaluate
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2))
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))]
        >>> loss, accuracy = evaluate(model, data, nn.functional.cross_entropy)
        >>> accuracy
        0.5
    """
    check_bool(amp, "amp")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = to_device((inputs, targets), device)
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
    """Train ``model`` for ``epochs`` over ``train_loader`` and return a :class:`History`.

    Each epoch is one :func:`train_steps` pass over the loader. On CUDA the forward pass runs
    under bf16 autocast (``amp=True``); on the CPU and MPS it runs in float32. Epoch times
    synchronize the device first, so they are true wall-clock times.

    Args:
        model: the model; moved to ``device``.
        train_loader: batches of ``(inputs, targets)``, iterated once per epoch.
        optimizer: the optimizer of ``model``'s parameters.
        loss_fn: ``loss_fn(outputs, targets)``.
        epochs: number of passes over ``train_loader``.
        val_loader: if given, :func:`evaluate` runs on it after every epoch.
        device: where to train; by default where the model's parameters are.
        amp: bf16 autocast on CUDA (no effect elsewhere).
        progress: show a tqdm bar over the epochs (off by default so that pages and logs stay
            clean).

    Returns:
        The per-epoch :class:`History`.

    Raises:
        TypeError: ``epochs`` is not an int, or ``amp``/``progress`` not a bool.
        ValueError: ``epochs < 1``.

    Examples:
        >>> from shared_lib.training import fit
        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(64, 2); y = (x[:, 0] > 0).long()
        >>> model = nn.Linear(2, 2)
        >>> optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
        >>> history = fit(model, [(x, y)], optimizer, epochs=30, val_loader=[(x, y)])
        >>> history.train_loss[-1] < history.train_loss[0], history.val_accuracy[-1] > 0.9
        (True, True)
    """
    check_int(epochs, "epochs", 1)
    check_bool(amp, "amp")
    check_bool(progress, "progress")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    history = History()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, desc="epochs")
    sizes: list[int] = []

    def batch_loss(batch: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs, targets = to_device(batch, device)
        sizes.append(len(targets))
        with autocast_for(device, amp):
            return loss_fn(model(inputs), targets)

    for _ in range(epochs):
        model.train()
        synchronize(device)
        start = time.perf_counter()
        sizes.clear()
        losses = train_steps(optimizer, train_loader, batch_loss)
        synchronize(device)
        history.epoch_seconds.append(time.perf_counter() - start)
        total_loss = 0.0
        for loss, size in zip(losses, sizes, strict=True):
            total_loss += loss * size
        history.train_loss.append(total_loss / max(sum(sizes), 1))
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
) -> list[float]:
    """``steps`` Adam steps, each on ``batch_loss(rows)`` for ``batch_size`` row indices drawn
    from ``range(n)`` (with replacement) by ``generator``: the recipe of chapter 08's demos.

    :func:`train_steps` over :func:`random_batches` with a fresh Adam optimizer.

    Args:
        parameters: what Adam trains.
        batch_loss: the scalar loss of a batch of row indices.
        n: number of rows to draw from.
        steps: number of steps.
        lr: Adam's learning rate.
        batch_size: rows per step.
        generator: the seeded source of the draws.

    Returns:
        The loss of every step.

    Examples:
        >>> from shared_lib.training import adam_on_random_batches
        >>> import torch
        >>> weight = torch.zeros(1, requires_grad=True)
        >>> x = torch.ones(8)
        >>> losses = adam_on_random_batches(
        ...     [weight], lambda rows: ((weight * x[rows] - 2) ** 2).mean(), n=8, steps=200,
        ...     lr=0.05, batch_size=4, generator=torch.Generator().manual_seed(0))
        >>> round(weight.item(), 2)
        2.0
    """
    optimizer = torch.optim.Adam(parameters, lr=lr)
    return train_steps(optimizer, random_batches(n, batch_size, steps, generator), batch_loss)
