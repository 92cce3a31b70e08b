"""Chapter 07, *Comparison with other techniques*: sharing against compression and
regularisation at one budget of bytes.

The techniques (k-means weight sharing, magnitude pruning, low rank, PCA, soft weight sharing)
with honest byte counts (:func:`storage_bytes`, :func:`stored_numbers`), and one recipe for all
of them: :func:`run_technique` trains (or compresses) a model on a split and measures it;
:func:`summarize`, :func:`pareto_front`, :func:`winner` and :func:`plot_pareto` compare the
results on an accuracy-vs-bytes Pareto front. The layers these techniques build live in
:mod:`shared_lib.layers.compressed`.
"""

from __future__ import annotations

import math
import statistics
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from matplotlib.axes import Axes
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import prune

from shared_lib._validation import check_float, check_int
from shared_lib.data import Split
from shared_lib.data.splits import Batches
from shared_lib.layers.compressed import CodebookLinear, LowRankLinear, SoftWeightSharing
from shared_lib.training import evaluate, fit, seed_everything

__all__ = [
    "Recipe",
    "Result",
    "Summary",
    "finish_pruning",
    "format_table",
    "index_bits",
    "kmeans_share",
    "linear_weights",
    "low_rank",
    "magnitude_prune",
    "pareto_front",
    "pca_projection",
    "plot_pareto",
    "run_technique",
    "snap_to_prior",
    "storage_bytes",
    "stored_numbers",
    "summarize",
    "winner",
]


@dataclass(frozen=True)
class Recipe:
    """The training recipe every technique shares: Adam, epochs, batch size, learning rate."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-2
    finetune_epochs: int = 5


@dataclass(frozen=True)
class Result:
    """One trained model: technique, its size setting, what it stores, how well it does."""

    technique: str
    setting: str
    seed: int
    parameters: int
    bytes: int
    accuracy: float
    seconds: float


def _train(
    model: nn.Module,
    split: Split,
    recipe: Recipe,
    seed: int,
    epochs: int,
    weight_decay: float,
    penalty: Callable[[], torch.Tensor] | None,
    extra: list[nn.Parameter],
) -> float:
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    optimizer = torch.optim.Adam(params, lr=recipe.lr, weight_decay=weight_decay)

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(outputs, targets)
        return loss + penalty() if penalty is not None else loss

    batches = Batches(split.x_train, split.y_train, recipe.batch_size, seed)
    history = fit(model, batches, optimizer, loss_fn, epochs=epochs, device="cpu", amp=False)
    return sum(history.epoch_seconds)


def run_technique(
    technique: str,
    setting: str,
    build: Callable[[], nn.Module],
    split: Split,
    seed: int,
    recipe: Recipe = Recipe(),
    weight_decay: float = 0.0,
    compress: Callable[[nn.Module], nn.Module] | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    penalty_parameters: Iterable[nn.Parameter] = (),
) -> tuple[Result, nn.Module]:
    """Train ``build()`` with the common recipe and measure it (chapter 07).

    Seeds everything with ``seed`` before building, so every technique sees the same data
    order and the same initial draws. Adam with ``weight_decay`` (L2) if given.

    Args:
        compress: a post-training technique: ``build()`` then returns an already trained model
            (a copy), ``compress(model) -> model`` shrinks it, and the result is fine-tuned for
            ``recipe.finetune_epochs`` (0: not at all) instead of trained for ``recipe.epochs``.
        penalty: ``penalty(model)`` is added to the loss at every step (e.g. soft weight
            sharing); ``penalty_parameters`` (its own parameters) are trained with the model.

    Returns:
        The :class:`Result` (seconds = training or fine-tuning time only) and the model.
    """
    seed_everything(seed)
    model = build()
    extra = list(penalty_parameters)
    term = (lambda: penalty(model)) if penalty is not None else None
    if compress is None:
        seconds = _train(model, split, recipe, seed, recipe.epochs, weight_decay, term, extra)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = compress(model)
        seconds = 0.0
        if recipe.finetune_epochs:
            seconds = _train(
                model, split, recipe, seed, recipe.finetune_epochs, weight_decay, term, extra
            )
    _, accuracy = evaluate(model, [(split.x_test, split.y_test)], F.cross_entropy, "cpu", False)
    result = Result(
        technique, setting, seed, stored_numbers(model), storage_bytes(model), accuracy, seconds
    )
    return result, model


@dataclass(frozen=True)
class Summary:
    """Mean and spread over seeds of the :class:`Result` records of one technique and setting."""

    technique: str
    setting: str
    parameters: int
    bytes: int
    accuracy: float
    spread: float
    seconds: float
    seeds: int


def summarize(results: list[Result]) -> list[Summary]:
    """Group results by (technique, setting); accuracy mean and standard deviation over seeds."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for result in results:
        groups.setdefault((result.technique, result.setting), []).append(result)
    summaries = []
    for (technique, setting), rows in groups.items():
        accuracies = [r.accuracy for r in rows]
        summaries.append(
            Summary(
                technique,
                setting,
                round(statistics.mean(r.parameters for r in rows)),
                round(statistics.mean(r.bytes for r in rows)),
                statistics.mean(accuracies),
                statistics.stdev(accuracies) if len(rows) > 1 else 0.0,
                statistics.mean(r.seconds for r in rows),
                len(rows),
            )
        )
    return summaries


def format_table(summaries: list[Summary]) -> str:
    """A plain-text table: technique, setting, unique numbers, bytes, accuracy ± spread, time."""
    lines = [
        f"{'technique':<16} {'setting':<14} {'numbers':>8} {'bytes':>7} "
        f"{'accuracy':>15} {'train s':>8}"
    ]
    for s in sorted(summaries, key=lambda s: (s.technique, s.bytes)):
        lines.append(
            f"{s.technique:<16} {s.setting:<14} {s.parameters:>8,} {s.bytes:>7,} "
            f"{s.accuracy:>8.3f} ± {s.spread:.3f} {s.seconds:>8.2f}"
        )
    return "\n".join(lines)


def pareto_front(summaries: list[Summary]) -> list[Summary]:
    """The summaries no other one beats on both size (fewer bytes) and accuracy, by size."""
    front, best = [], -math.inf
    for s in sorted(summaries, key=lambda s: (s.bytes, -s.accuracy)):
        if s.accuracy > best:
            front.append(s)
            best = s.accuracy
    return front


def winner(summaries: list[Summary], budget: int) -> Summary | None:
    """The most accurate summary (mean over seeds) that fits in ``budget`` bytes, if any."""
    fitting = [s for s in summaries if s.bytes <= budget]
    return max(fitting, key=lambda s: s.accuracy) if fitting else None


def plot_pareto(
    summaries: list[Summary],
    colours: dict[str, str],
    budget: int | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Accuracy against bytes (log scale), one colour per technique, the Pareto front drawn;
    with ``budget``, the region beyond it greyed and the winner inside it circled (ch. 07)."""
    import matplotlib.pyplot as plt

    ax = ax if ax is not None else plt.gca()
    markers = "osD^vP*Xhd<>"
    for i, technique in enumerate(dict.fromkeys(s.technique for s in summaries)):
        rows = sorted((s for s in summaries if s.technique == technique), key=lambda s: s.bytes)
        ax.errorbar(
            [s.bytes for s in rows],
            [s.accuracy for s in rows],
            yerr=[s.spread for s in rows],
            color=colours[technique],
            marker=markers[i % len(markers)],
            ms=5,
            lw=1,
            capsize=2,
            label=technique,
        )
    front = pareto_front(summaries)
    ax.step(
        [s.bytes for s in front],
        [s.accuracy for s in front],
        where="post",
        color="black",
        lw=1,
        ls=":",
        label="Pareto front",
    )
    ax.set_xscale("log")
    if budget is not None:
        left, right = ax.get_xlim()
        ax.axvspan(budget, max(right, budget), color="0.85", zorder=0)
        ax.set_xlim(left, right)
        best = winner(summaries, budget)
        if best is not None:
            ax.scatter(
                [best.bytes],
                [best.accuracy],
                s=260,
                facecolors="none",
                edgecolors="black",
                lw=2,
                zorder=5,
            )
            ax.set_title(f"≤ {budget:,} bytes: best is {best.technique} ({best.setting})")
    ax.set(xlabel="stored weights (bytes, log scale)", ylabel="test accuracy")
    return ax


FLOAT_BYTES = 4  # float32


def _replace_linears(model: nn.Module, make: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """Replace every ``nn.Linear`` inside ``model`` (in place) by ``make(linear)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if not targets:
        raise ValueError("model holds no nn.Linear layer to compress")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, make(linear))
    return model


# ---------------------------------------------------------------------------------------------
# k-means weight sharing (Deep Compression)
# ---------------------------------------------------------------------------------------------


def index_bits(k: int) -> int:
    """Bits of one index into a codebook of ``k`` values: ``ceil(log2 k)``, at least 1."""
    check_int(k, "k", minimum=1)
    return max(1, math.ceil(math.log2(k)))


def kmeans_share(model: nn.Module, k: int, iterations: int = 30) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a
    :class:`~shared_lib.layers.compressed.CodebookLinear` with at most ``k`` distinct weight
    values per layer; returns ``model`` (chapter 07)."""
    check_int(k, "k", minimum=1)
    return _replace_linears(model, lambda linear: CodebookLinear.from_linear(linear, k, iterations))


# ---------------------------------------------------------------------------------------------
# Magnitude pruning and low-rank factorisation
# ---------------------------------------------------------------------------------------------


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every ``nn.Linear`` and
    ``nn.Conv2d`` (layer by layer), keeping the zeros through fine-tuning (chapter 07).

    Uses ``torch.nn.utils.prune`` (a mask re-applied before every forward pass); call
    ``torch.nn.utils.prune.remove(module, "weight")`` or :func:`finish_pruning` to make it
    permanent. Biases are kept dense.
    """
    sparsity = check_float(sparsity, "sparsity", 0.0, 1.0, high_inclusive=False)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("model holds no nn.Linear or nn.Conv2d layer to prune")
    for layer in layers:
        keep = max(1, round(layer.weight.numel() * (1 - sparsity)))  # never empty a layer
        prune.l1_unstructured(layer, "weight", amount=layer.weight.numel() - keep)
    return model


def finish_pruning(model: nn.Module) -> nn.Module:
    """Make the masks of :func:`magnitude_prune` permanent (zeros stay in ``weight``)."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


def low_rank(model: nn.Module, rank: int) -> nn.Module:
    """Factorise every ``nn.Linear`` of ``model`` (in place) to ``rank`` by truncated SVD, where
    that stores fewer numbers; other layers stay. Returns ``model`` (chapter 07)."""
    check_int(rank, "rank", minimum=1)

    def make(linear: nn.Linear) -> nn.Module:
        saves = rank * (linear.in_features + linear.out_features) < linear.weight.numel()
        return LowRankLinear.from_linear(linear, rank) if saves else linear

    return _replace_linears(model, make)


def pca_projection(inputs: torch.Tensor, components: int) -> nn.Linear:
    """A frozen ``nn.Linear`` that centres ``inputs``' features and projects them on their
    first ``components`` principal directions (chapter 07). Its weights count as stored."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2:
        raise ValueError("inputs must be a 2-D tensor (examples, features)")
    check_int(components, "components", minimum=1)
    if components > min(inputs.shape):
        raise ValueError(f"components must be <= {min(inputs.shape)}, got {components}")
    mean = inputs.mean(dim=0)
    _, _, vh = torch.linalg.svd(inputs - mean, full_matrices=False)
    layer = nn.Linear(inputs.shape[1], components)
    with torch.no_grad():
        layer.weight.copy_(vh[:components])
        layer.bias.copy_(-vh[:components] @ mean)
    return layer.requires_grad_(False)


def linear_weights(model: nn.Module) -> torch.Tensor:
    """Every ``nn.Linear`` weight of ``model`` in one flat tensor (what a prior is applied to)."""
    weights = [m.weight.reshape(-1) for m in model.modules() if type(m) is nn.Linear]
    if not weights:
        raise ValueError("model holds no nn.Linear layer")
    return torch.cat(weights)


def snap_to_prior(model: nn.Module, prior: SoftWeightSharing) -> nn.Module:
    """Replace every ``nn.Linear`` (in place) by a
    :class:`~shared_lib.layers.compressed.CodebookLinear` whose codebook is the prior's means
    and whose assignment is each weight's most responsible component: soft sharing made hard,
    with at most ``n_components`` distinct weights (chapter 07)."""
    if not isinstance(prior, SoftWeightSharing):
        raise TypeError(f"prior must be a SoftWeightSharing, got {type(prior).__name__}")

    def make(linear: nn.Linear) -> CodebookLinear:
        return CodebookLinear(prior.means.detach(), prior.assign(linear.weight), linear.bias)

    return _replace_linears(model, make)


# ---------------------------------------------------------------------------------------------
# Counting what each representation stores
# ---------------------------------------------------------------------------------------------


def _dense_or_sparse_bytes(weight: torch.Tensor) -> int:
    """Bytes of a weight tensor stored densely, or sparsely when that is smaller.

    Sparse convention: float32 nonzeros plus their positions, either as a bitmask (1 bit per
    entry) or as one 16-bit position per nonzero, whichever is smaller.
    """
    n, nonzeros = weight.numel(), int(torch.count_nonzero(weight))
    sparse = FLOAT_BYTES * nonzeros + min(math.ceil(n / 8), 2 * nonzeros)
    return min(FLOAT_BYTES * n, sparse)


def _weights(model: nn.Module) -> Iterator[tuple[nn.Module, str, torch.Tensor]]:
    """(module, name, tensor) for every stored tensor, each counted once."""
    seen: set[int] = set()
    for module in model.modules():
        tensors = list(module.named_parameters(recurse=False))
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            tensors = [(n, t) for n, t in tensors if n != "weight_orig"]
            tensors.append(("weight", module.weight))  # the masked weight is what is stored
        for name, tensor in tensors:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                yield module, name, tensor


def storage_bytes(model: nn.Module) -> int:
    """Bytes needed to store ``model``'s weights for inference, float32 (chapter 07).

    Conventions: dense tensors 4 bytes a number;
    :class:`~shared_lib.layers.compressed.CodebookLinear` the codebook (4 bytes a value) plus
    ``index_bits(k)`` bits per weight; pruned weights (zeros in ``weight``, or a pruning mask)
    the cheaper of dense and sparse (see ``_dense_or_sparse_bytes``);
    :class:`~shared_lib.layers.hashed.HashedLinear` only its real weights (the hash is
    recomputed from the seed).
    Frozen tensors (a PCA projection) count: inference needs them.
    """
    total = 0
    for module, name, tensor in _weights(model):
        if isinstance(module, CodebookLinear) and name == "codebook":
            k = tensor.numel()
            total += FLOAT_BYTES * k + math.ceil(module.assignment.numel() * index_bits(k) / 8)
        elif name == "weight" and tensor.dim() >= 2:
            total += _dense_or_sparse_bytes(tensor)
        else:
            total += FLOAT_BYTES * tensor.numel()
    return total


def stored_numbers(model: nn.Module) -> int:
    """Unique numbers ``model`` stores: parameters counted once, a pruned tensor by its nonzeros,
    a codebook by its ``k`` values (indices are not numbers we learn); chapter 07."""
    total = 0
    for _, name, tensor in _weights(model):
        if name == "weight" and tensor.dim() >= 2:
            total += int(torch.count_nonzero(tensor))
        else:
            total += tensor.numel()
    return total
