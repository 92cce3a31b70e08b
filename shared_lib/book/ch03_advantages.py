"""Chapter 03, *Advantages*: learning curves of shared vs. unshared models, and the step-cost
figure.

Chapter 03 asks whether a model that shares its weights needs fewer examples. It compares pairs
of models that start as **the same function** and differ only in whether a weight is one tensor
used everywhere or one copy per use: a convolution vs. the locally connected layer made from it,
and a recurrent cell shared across time vs. one cell per step
(:class:`~shared_lib.models.small.StepRNN`, untied with :func:`shared_lib.untie`).
:func:`learning_curves` trains every (model, training-set size, seed) on the same examples in the
same order and tests it on a held-out set; the seeds of one model are trained together,
vectorised with :func:`torch.func.vmap`, which gives the same updates as training them one by
one (Adam works element by element) at a fraction of the cost. Given several learning rates
and a validation set, it trains every model at each of them and keeps, per model and size, the
one with the best validation accuracy: each side of a comparison gets its own best recipe.

:func:`kv_cache_bytes` and :func:`weight_bytes` give the two memories of a Transformer at
inference, for the chapter's comparison of cross-layer weight sharing with key/value sharing.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_int
from shared_lib.data import Split
from shared_lib.data.splits import balanced_subset
from shared_lib.training import train_steps

__all__ = [
    "LearningCurves",
    "hold_out",
    "kv_cache_bytes",
    "learning_curves",
    "plot_learning_curves",
    "plot_step_costs",
    "weight_bytes",
]

# ---------------------------------------------------------------------------------------------
# Learning curves.


@dataclass(frozen=True)
class LearningCurves:
    """Test accuracy of several models vs. the number of training examples, over seeds.

    Attributes:
        sizes: training-set sizes, increasing.
        seeds: the seeds (each fixes the initialisation, the subset and the minibatch order).
        accuracy: model name → array of shape ``(len(sizes), len(seeds))``.
        learning_rates: model name → the learning rate used at each size (the one picked on
            validation data when several were tried).
    """

    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    accuracy: dict[str, np.ndarray]
    learning_rates: dict[str, tuple[float, ...]] | None = None

    def mean(self, name: str) -> np.ndarray:
        """Mean accuracy over seeds, one value per size."""
        return self.accuracy[name].mean(axis=1)

    def median_gap(self, first: str, second: str) -> np.ndarray:
        """The median over seeds of ``accuracy[first] - accuracy[second]``, one value per size."""
        return np.median(self.gap(first, second), axis=1)

    def std(self, name: str) -> np.ndarray:
        """Standard deviation over seeds (ddof=0), one value per size."""
        return self.accuracy[name].std(axis=1)

    def gap(self, first: str, second: str) -> np.ndarray:
        """``accuracy[first] - accuracy[second]``, per size and seed (paired by seed)."""
        return self.accuracy[first] - self.accuracy[second]

    def crossing(self, first: str, second: str) -> int | None:
        """The first size at which the mean gap ``first - second`` has the opposite sign to its
        sign at the smallest size (the curves have crossed), or ``None`` if they never do."""
        gap = np.sign(self.gap(first, second).mean(axis=1))
        for size, sign in zip(self.sizes[1:], gap[1:], strict=True):
            if gap[0] != 0 and sign == -gap[0]:
                return size
        return None

    def table(self) -> str:
        """A text table: one row per size, ``mean ± std`` per model."""
        names = list(self.accuracy)
        lines = [f"{'examples':>9}" + "".join(f"{name:>18}" for name in names)]
        for i, size in enumerate(self.sizes):
            cells = "".join(f"{self.mean(n)[i]:>11.3f} ± {self.std(n)[i]:.3f}" for n in names)
            lines.append(f"{size:>9}{cells}")
        return "\n".join(lines)


class _PerModelAdam(torch.optim.Adam):
    """Adam on stacked parameters (models along the first dimension), one learning rate per model.

    Adam's update is ``lr`` times a quantity that does not depend on ``lr``, so a step at
    ``lr = 1`` scaled per model gives every model the update of its own learning rate.
    """

    def __init__(self, params, learning_rates: torch.Tensor):
        super().__init__(params, lr=1.0)
        self.learning_rates = learning_rates

    @torch.no_grad()
    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        before = [p.clone() for p in params]
        super().step(closure)
        for p, old in zip(params, before, strict=True):
            rate = self.learning_rates.view(-1, *[1] * (p.dim() - 1))
            p.copy_(old + rate * (p - old))


def _train_ensemble(
    factory: Callable[[], nn.Module],
    seeds: Sequence[int],
    subsets: list[torch.Tensor],
    learning_rates: Sequence[float],
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    evaluations: Sequence[tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    batch_size: int,
) -> list[np.ndarray]:
    """Train one model per subset (``subsets[k]`` with initial seed ``seeds[k]`` and Adam's
    learning rate ``learning_rates[k]``) together with vmap; return their accuracies on each of
    ``evaluations`` (pairs of inputs and labels)."""
    from torch.func import functional_call, stack_module_state, vmap

    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            models.append(factory())
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")

    def run(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
        return functional_call(template, (p, b), (x,))

    count = len(models)
    sizes = torch.tensor([len(s) for s in subsets])
    padded = torch.zeros(count, int(sizes.max()), dtype=torch.long)
    for k, subset in enumerate(subsets):
        padded[k, : len(subset)] = subset
    rates = torch.tensor([float(lr) for lr in learning_rates])
    optimizer = _PerModelAdam(params.values(), rates)
    # One stream of minibatches per (size, seed): its seed, so both models of a pair (and every
    # learning rate) see the same examples in the same order.
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    rows = torch.arange(count)[:, None]

    def minibatches():
        for _ in range(steps):
            draws = torch.stack([torch.rand(batch_size, generator=g) for g in generators])
            yield padded[rows, (draws * sizes[:, None]).long()]  # (models, batch), with replacement

    def summed_loss(index: torch.Tensor) -> torch.Tensor:
        logits = vmap(run)(params, buffers, x_train[index])
        loss = F.cross_entropy(logits.flatten(0, 1), y_train[index].flatten(), reduction="sum")
        return loss / batch_size  # = the sum over models of each one's mean loss

    train_steps(optimizer, minibatches(), summed_loss)
    accuracies = []
    with torch.no_grad():
        for x, y in evaluations:
            predictions = vmap(run, in_dims=(0, 0, None))(params, buffers, x).argmax(-1)
            accuracies.append((predictions == y).float().mean(dim=1).numpy())
    return accuracies


def learning_curves(
    factories: Mapping[str, Callable[[], nn.Module]],
    data: Split,
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    steps: int = 150,
    batch_size: int = 32,
    lr: float | Sequence[float] = 3e-3,
    validation: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> LearningCurves:
    """Test accuracy vs. training-set size for each model, over several seeds (chapter 03).

    For every size ``n`` and seed ``s``, each model is built by its factory after
    ``torch.manual_seed(s)`` — so factories that build a pair from the same seeded model start
    from the same function — and trained with Adam for ``steps`` minibatches of
    ``batch_size`` examples drawn with replacement from ``balanced_subset(y_train, n, s)``, in an
    order fixed by ``s``. Every model gets the same budget of steps whatever ``n``. Accuracy is
    measured on the whole test set. The global random state is left untouched.

    With several learning rates, every model is trained at each of them (same subsets, same
    order) and, for each model and size, the rate with the best mean accuracy over seeds on
    ``validation`` is kept; the test accuracy reported is the one at that rate. The test set is
    never used to choose.

    Args:
        factories: model name → a function with no argument returning a fresh model.
        data: the training pool and the test set (inputs batched along the first dimension).
        sizes: training-set sizes (each at most the size of the pool).
        seeds: seeds to average over.
        steps: optimizer steps per model.
        batch_size: examples per step.
        lr: Adam's learning rate, or several to choose from on ``validation``.
        validation: ``(inputs, labels)`` held out from both the pool and the test set; needed
            when ``lr`` lists several rates.

    Returns:
        The curves, with the learning rate used per model and size.
    """
    if not factories:
        raise ValueError("factories must name at least one model")
    for name, factory in factories.items():
        if not callable(factory):
            raise TypeError(f"factories[{name!r}] must be callable, got {type(factory).__name__}")
    if not isinstance(data, Split):
        raise TypeError(f"data must be a shared_lib.data.Split, got {type(data).__name__}")
    sizes = tuple(sizes)
    seeds = tuple(seeds)
    if not sizes or not seeds:
        raise ValueError("sizes and seeds must be non-empty")
    if list(sizes) != sorted(set(sizes)):
        raise ValueError(f"sizes must be increasing and distinct, got {sizes}")
    for size in sizes:
        check_int(size, "sizes[...]", 1)
        if size > len(data.y_train):
            raise ValueError(f"sizes: {size} exceeds the training pool ({len(data.y_train)})")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    rates = (lr,) if isinstance(lr, (int, float)) else tuple(lr)
    if not rates or not all(isinstance(r, (int, float)) and r > 0 for r in rates):
        raise ValueError(f"lr must be > 0 (or a non-empty sequence of rates > 0), got {lr}")
    if len(rates) > 1 and validation is None:
        raise ValueError("several learning rates need validation=(inputs, labels) to choose")
    evaluations = [(data.x_test, data.y_test)]
    if validation is not None:
        evaluations.append(tuple(validation))

    runs = [(rate, size, seed) for rate in rates for size in sizes for seed in seeds]
    subsets = {(size, seed): balanced_subset(data.y_train, size, seed) for _, size, seed in runs}
    shape = (len(rates), len(sizes), len(seeds))
    accuracy, chosen = {}, {}
    for name, factory in factories.items():
        measured = _train_ensemble(
            factory,
            [seed for _, _, seed in runs],
            [subsets[size, seed] for _, size, seed in runs],
            [rate for rate, _, _ in runs],
            data.x_train,
            data.y_train,
            evaluations,
            steps,
            batch_size,
        )
        test = measured[0].reshape(shape)
        best = measured[-1].reshape(shape).mean(axis=2).argmax(axis=0)  # one rate per size
        accuracy[name] = test[best, np.arange(len(sizes))]
        chosen[name] = tuple(float(rates[i]) for i in best)
    return LearningCurves(sizes, seeds, accuracy, chosen)


def hold_out(data: Split, n: int, seed: int) -> tuple[Split, tuple[torch.Tensor, torch.Tensor]]:
    """Split ``n`` class-balanced examples off the training pool as a validation set.

    Returns:
        The split with the smaller pool (same test set), and ``(inputs, labels)`` held out.
    """
    check_int(n, "n", 1)
    if n >= len(data.y_train):
        raise ValueError(f"n must be below the pool's size {len(data.y_train)}, got {n}")
    held = balanced_subset(data.y_train, n, seed)
    keep = torch.ones(len(data.y_train), dtype=torch.bool)
    keep[held] = False
    pool = Split(data.x_train[keep], data.y_train[keep], data.x_test, data.y_test)
    return pool, (data.x_train[held], data.y_train[held])


# ---------------------------------------------------------------------------------------------
# Memory at inference.


def weight_bytes(config, bytes_per_value: int = 2) -> int:
    """Bytes of the stored weights of a model built from a config, counted on the meta device.

    The config is a :class:`~shared_lib.models.transformer.TransformerConfig`; two bytes per value
    (fp16/bf16) by default.

    Examples:
        ALBERT-base stores about a ninth of BERT-base's weights (12M against 108M parameters):

        >>> from shared_lib.models import PRESETS
        >>> round(weight_bytes(PRESETS["bert-base"]) / weight_bytes(PRESETS["albert-base"]), 1)
        9.3
    """
    from shared_lib.counting import count_parameters
    from shared_lib.models import build_model

    return bytes_per_value * count_parameters(build_model(config, device="meta"))


def kv_cache_bytes(
    config,
    sequence_length: int,
    batch: int = 1,
    kv_heads: int | None = None,
    kv_layers: int | None = None,
    bytes_per_value: int = 2,
) -> int:
    """Bytes of the key/value cache of a Transformer of this shape, decoding ``sequence_length``
    tokens: ``2 (keys and values) × layers × kv_heads × head_dim × sequence × batch``.

    Cross-layer *weight* sharing does not enter the formula: every layer still computes and
    caches its own keys and values. What shrinks the cache is sharing the keys and values
    themselves: fewer key/value heads (``kv_heads``: 1 for multi-query, a few for grouped-query
    attention) or fewer layers that keep a cache (``kv_layers``: cross-layer KV sharing).

    Args:
        config: a :class:`~shared_lib.models.transformer.TransformerConfig` (its ``num_layers``,
            ``num_heads`` and ``hidden_size`` are used).
        sequence_length: tokens cached per sequence.
        batch: sequences decoded at once.
        kv_heads: key/value heads per layer (default: ``num_heads``, plain multi-head attention).
        kv_layers: layers that keep their own cache (default: ``num_layers``).
        bytes_per_value: 2 for fp16/bf16.

    Examples:
        >>> from shared_lib.models import PRESETS
        >>> kv_cache_bytes(PRESETS["bert-base"], 512)  # 2 × 12 × 12 × 64 × 512 × 2 bytes
        18874368
        >>> kv_cache_bytes(PRESETS["albert-base"], 512) == kv_cache_bytes(PRESETS["bert-base"], 512)
        True
    """
    check_int(sequence_length, "sequence_length", 1)
    check_int(batch, "batch", 1)
    check_int(bytes_per_value, "bytes_per_value", 1)
    kv_heads = config.num_heads if kv_heads is None else kv_heads
    kv_layers = config.num_layers if kv_layers is None else kv_layers
    check_int(kv_heads, "kv_heads", 1)
    check_int(kv_layers, "kv_layers", 1)
    head_dim = config.hidden_size // config.num_heads
    return 2 * kv_layers * kv_heads * head_dim * sequence_length * batch * bytes_per_value


def plot_learning_curves(curves: LearningCurves, ax=None, title: str | None = None, colors=None):
    """Mean test accuracy vs. training examples (log axis), a band of ± one std over seeds."""
    import matplotlib.pyplot as plt

    from shared_lib.plotting import PALETTE, book_style

    if not isinstance(curves, LearningCurves):
        raise TypeError(f"curves must be LearningCurves, got {type(curves).__name__}")
    colors = colors or PALETTE
    with book_style():
        if ax is None:
            _, ax = plt.subplots()
        for color, name in zip(colors, curves.accuracy, strict=False):
            mean, std = curves.mean(name), curves.std(name)
            ax.plot(curves.sizes, mean, marker="o", color=color, label=name)
            ax.fill_between(curves.sizes, mean - std, mean + std, color=color, alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(curves.sizes, [str(s) for s in curves.sizes])
        ax.minorticks_off()
        ax.set_xlabel("training examples")
        ax.set_ylabel("test accuracy")
        ax.legend()
        if title:
            ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------
# Drawing.


def plot_step_costs(
    costs: Mapping[tuple[int, str], Mapping[str, float]],
    layers: int,
    share: str,
):
    """Grouped bars of every cost of the ``(layers, share)`` model beside its twin (chapter 03).

    ``costs[(layers, share)]`` maps a cost's label (with its unit) to its value; the twin is the
    model of the same depth with the other sharing setting, drawn hatched. Each cost is drawn
    as a fraction of its largest value over all of ``costs`` (so the scale stays put while a
    slider moves) and labelled with its value.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from shared_lib.plotting import PALETTE, book_style

    if (layers, share) not in costs:
        raise ValueError(f"no costs for (layers, share) = {(layers, share)!r}; have {list(costs)}")
    twins = [s for (depth, s) in costs if depth == layers and s != share]
    names = [share, *twins]
    labels = list(costs[(layers, share)])
    shares = sorted({s for _, s in costs})
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(shares)}
    width = 0.8 / len(names)
    with book_style():
        figure, ax = plt.subplots(figsize=(8.0, 3.4))
        for i, name in enumerate(names):
            values = [costs[(layers, name)][label] for label in labels]
            tops = [max(v[label] for v in costs.values()) or 1.0 for label in labels]
            xs = np.arange(len(labels)) + (i - (len(names) - 1) / 2) * width
            bars = ax.bar(
                xs,
                [v / top for v, top in zip(values, tops, strict=True)],
                width,
                color=colour[name],
                alpha=1.0 if i == 0 else 0.45,
                hatch=None if i == 0 else "//",
                label=f"share={name}" + ("" if i == 0 else " (twin)"),
            )
            for bar, value in zip(bars, values, strict=True):
                ax.text(
                    bar.get_x() + bar.get_width() / 2,
                    bar.get_height(),
                    f"{value:.3g}",
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
        ax.set_xticks(range(len(labels)), [textwrap.fill(label, 15) for label in labels])
        ax.set_ylim(0, 1.35)
        ax.set_ylabel("fraction of the largest\nvalue in the sweep")
        ax.set_title(f"{layers} layers, share={share!r}")
        ax.legend(loc="upper center", ncol=len(names), fontsize=8)
        figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.22)  # no tight bbox here
    return figure
