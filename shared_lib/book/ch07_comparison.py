"""Chapter 07, *Comparison with other techniques*: sharing against compression and
regularisation at one budget of bytes.

The techniques (k-means weight sharing, uniform quantization, one-shot and iterative magnitude
pruning, low rank, PCA, soft weight sharing) with honest byte counts (:func:`storage_bytes`,
:func:`stored_numbers`), and one recipe for all of them: :func:`run_technique` trains (or
compresses and fine-tunes) a model with early stopping on a validation split and measures it on
the test split; :func:`pick` chooses a recipe on validation data; :func:`summarize`,
:func:`pareto_front`, :func:`winner` and :func:`plot_pareto` compare the results on an
accuracy-vs-bytes Pareto front. The layers these techniques build live in
:mod:`shared_lib.layers.compressed`.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

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
    "hold_out",
    "index_bits",
    "kmeans_share",
    "l1_penalty",
    "linear_weights",
    "low_rank",
    "magnitude_prune",
    "pareto_front",
    "pca_projection",
    "pick",
    "plot_pareto",
    "pruning_schedule",
    "run_technique",
    "snap_to_prior",
    "storage_bytes",
    "stored_numbers",
    "summarize",
    "uniform_quantize",
    "winner",
]


@dataclass(frozen=True)
class Recipe:
    """The training recipe every technique shares (chapter 07).

    Adam with batches of ``batch_size`` at rate ``lr``; when the validation loss has not
    improved for ``patience`` epochs, training goes back to the best weights and on with a 10x
    smaller rate, ``decays`` times, then stops (at most ``epochs`` epochs in all); the weights of
    the best validation epoch are kept. A post-training technique fine-tunes with
    ``finetune_lr`` for at most ``finetune_epochs`` epochs per compression stage, the same way.
    """

    epochs: int = 80
    batch_size: int = 128
    lr: float = 1e-2
    finetune_epochs: int = 20
    finetune_lr: float = 1e-3
    patience: int = 8
    decays: int = 1


@dataclass(frozen=True)
class Result:
    """One trained model: technique, its size setting, what it stores, how well it does.

    ``accuracy`` is on the test split, ``val_loss`` and ``val_accuracy`` on the validation split
    the recipe was picked on; ``epochs`` counts every epoch trained (all stages), ``curve`` is the
    validation loss after each of them.
    """

    technique: str
    setting: str
    seed: int
    parameters: int
    bytes: int
    accuracy: float
    seconds: float
    val_loss: float = math.nan
    val_accuracy: float = math.nan
    epochs: int = 0
    curve: tuple[float, ...] = field(default=(), repr=False)


def hold_out(split: Split, fraction: float, seed: int) -> Split:
    """Split ``split``'s training half into a smaller training half and a validation half
    (returned as the new split's test half), by a seeded permutation (chapter 07).

    Examples:
        >>> import torch
        >>> from shared_lib.data import Split
        >>> from shared_lib.book.ch07_comparison import hold_out
        >>> whole = Split(torch.arange(10.0)[:, None], torch.arange(10) % 2, torch.zeros(2, 1),
        ...               torch.zeros(2, dtype=torch.long))
        >>> hold_out(whole, 0.2, seed=0)
        Split(train=(8, 1), test=(2, 1), classes=2)
    """
    fraction = check_float(fraction, "fraction", 0.0, 1.0, low_inclusive=False,
                           high_inclusive=False)  # fmt: skip
    check_int(seed, "seed", minimum=0)
    n = len(split.y_train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(n * fraction))
    val, train = order[:n_val], order[n_val:]
    return Split(split.x_train[train], split.y_train[train], split.x_train[val], split.y_train[val])


def _train(
    model: nn.Module,
    split: Split,
    recipe: Recipe,
    seed: int,
    lr: float,
    epochs: int,
    weight_decay: float,
    penalty: Callable[[], torch.Tensor] | None,
    extra: list[nn.Parameter],
) -> tuple[float, list[float]]:
    """Adam with early stopping on the validation loss: on a plateau of ``recipe.patience``
    epochs, back to the best weights and on with a 10x smaller rate, ``recipe.decays`` times, then
    stop; at most ``epochs`` epochs in all. The best epoch's weights are restored.

    Returns the training seconds and the validation loss after every epoch trained."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)

    def loss_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(outputs, targets)
        return loss + penalty() if penalty is not None else loss

    batches = Batches(split.x_train, split.y_train, recipe.batch_size, seed)
    validation = [(split.x_test, split.y_test)]
    best, best_state, best_extra, curve, seconds = math.inf, None, None, [], 0.0
    since, phase = 0, 0
    while len(curve) < epochs:
        start = time.perf_counter()
        fit(model, batches, optimizer, loss_fn, epochs=1, device="cpu", amp=False)
        seconds += time.perf_counter() - start
        loss, _ = evaluate(model, validation, F.cross_entropy, "cpu", False)
        curve.append(loss)
        if loss < best:
            best, since = loss, 0
            best_state = copy.deepcopy(model.state_dict())
            best_extra = [p.detach().clone() for p in extra]
            continue
        since += 1
        if since < recipe.patience:
            continue
        if phase == recipe.decays:  # a plateau at the last rate: done
            break
        phase, since = phase + 1, 0  # a plateau: back to the best weights, a 10x smaller rate
        _restore(model, extra, best_state, best_extra)
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.1**phase
    _restore(model, extra, best_state, best_extra)
    return seconds, curve


def _restore(
    model: nn.Module,
    extra: list[nn.Parameter],
    state: dict | None,
    values: list[torch.Tensor] | None,
) -> None:
    """Load the best epoch's weights back (the model's and the penalty's own parameters)."""
    if state is None:
        return
    model.load_state_dict(state)
    with torch.no_grad():
        for parameter, value in zip(extra, values or [], strict=True):
            parameter.copy_(value)


def run_technique(
    technique: str,
    setting: str,
    build: Callable[[], nn.Module],
    split: Split,
    seed: int,
    recipe: Recipe = Recipe(),
    weight_decay: float = 0.0,
    compress: Callable[[nn.Module], nn.Module]
    | Sequence[Callable[[nn.Module], nn.Module]]
    | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    penalty_parameters: Iterable[nn.Parameter] = (),
    test: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[Result, nn.Module]:
    """Train ``build()`` with the common recipe and measure it (chapter 07).

    Seeds everything with ``seed`` before building, so every technique sees the same data
    order and the same initial draws. Adam with ``weight_decay`` (L2) if given; early stopping on
    the validation loss (``split``'s test half is the validation data).

    Args:
        split: training data, and the validation data (its test half) the early stopping and
            the choice of recipe look at.
        compress: a post-training technique: ``build()`` then returns an already trained model
            (a copy), ``compress(model) -> model`` shrinks it, and the result is fine-tuned for
            at most ``recipe.finetune_epochs`` (0: not at all) instead of trained from scratch.
            A sequence of them is applied in stages, each followed by its fine-tuning (iterative
            pruning).
        penalty: ``penalty(model)`` is added to the loss at every step (e.g. soft weight
            sharing); ``penalty_parameters`` (its own parameters) are trained with the model.
        test: the held-out ``(inputs, targets)`` the accuracy is reported on (default: the
            validation data).

    Returns:
        The :class:`Result` (seconds = training or fine-tuning time only) and the model.
    """
    seed_everything(seed)
    model = build()
    extra = list(penalty_parameters)
    term = (lambda: penalty(model)) if penalty is not None else None
    if compress is None:
        seconds, curve = _train(
            model, split, recipe, seed, recipe.lr, recipe.epochs, weight_decay, term, extra
        )
    else:
        stages = [compress] if callable(compress) else list(compress)
        seconds, curve = 0.0, []
        for stage in stages:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = stage(model)
            if recipe.finetune_epochs:
                spent, losses = _train(
                    model, split, recipe, seed, recipe.finetune_lr, recipe.finetune_epochs,
                    weight_decay, term, extra,
                )  # fmt: skip
                seconds += spent
                curve += losses
    val_loss, val_accuracy = evaluate(
        model, [(split.x_test, split.y_test)], F.cross_entropy, "cpu", False
    )
    x_test, y_test = test if test is not None else (split.x_test, split.y_test)
    _, accuracy = evaluate(model, [(x_test, y_test)], F.cross_entropy, "cpu", False)
    result = Result(
        technique, setting, seed, stored_numbers(model), storage_bytes(model), accuracy, seconds,
        val_loss, val_accuracy, len(curve), tuple(curve),
    )  # fmt: skip
    return result, model


def pick(candidates: dict, score: Callable[[Result], float] = lambda r: r.val_loss):
    """The key of ``candidates`` (a dict ``key -> Result``) whose result has the lowest
    ``score`` (default: validation loss): a recipe picked on validation data, never on test."""
    if not candidates:
        raise ValueError("candidates must not be empty")

    def finite(key: object) -> float:  # a run that diverged (NaN) is never picked over another
        value = score(candidates[key])
        return math.inf if math.isnan(value) else value

    return min(candidates, key=finite)


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """``Σ |w|`` over every ``nn.Linear`` weight of ``model`` (biases free): the L1 penalty."""
    return linear_weights(model).abs().sum()


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
    epochs: float = 0.0


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
                statistics.mean(r.epochs for r in rows),
            )
        )
    return summaries


def format_table(summaries: list[Summary]) -> str:
    """A plain-text table: technique, setting, unique numbers, bytes, accuracy (± spread over
    seeds when there are several), epochs trained and training time."""
    lines = [
        f"{'technique':<18} {'setting':<14} {'numbers':>8} {'bytes':>7} "
        f"{'accuracy':>15} {'epochs':>6} {'train s':>8}"
    ]
    for s in sorted(summaries, key=lambda s: (s.technique, s.bytes)):
        spread = f" ± {s.spread:.3f}" if s.seeds > 1 else ""
        lines.append(
            f"{s.technique:<18} {s.setting:<14} {s.parameters:>8,} {s.bytes:>7,} "
            f"{f'{s.accuracy:.3f}{spread}':>15} {s.epochs:>6.0f} {s.seconds:>8.2f}"
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
    markers = "osD^vP*XhdpH<>8"  # one marker per technique, so colour is not the only cue
    front = pareto_front(summaries)
    ax.step(  # drawn first, thick and pale, so the points stay readable on top of it
        [s.bytes for s in front],
        [s.accuracy for s in front],
        where="post",
        color="black",
        alpha=0.3,
        lw=4,
        solid_capstyle="round",
        zorder=1,
        label="Pareto front",
    )
    for i, technique in enumerate(dict.fromkeys(s.technique for s in summaries)):
        rows = sorted((s for s in summaries if s.technique == technique), key=lambda s: s.bytes)
        spread = [s.spread for s in rows]
        ax.errorbar(
            [s.bytes for s in rows],
            [s.accuracy for s in rows],
            yerr=spread if any(spread) else None,
            color=colours[technique],
            marker=markers[i % len(markers)],
            ms=7,
            mec="white",
            mew=0.6,
            lw=1,
            alpha=0.9,
            capsize=2,
            zorder=3,
            label=technique,
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


def _evenly_spaced(values: torch.Tensor) -> bool:
    """Whether ``values`` (sorted) form an arithmetic progression: ``first + step · i``."""
    steps = values.detach().sort().values.diff()
    return steps.numel() <= 1 or bool(torch.allclose(steps, steps[:1].expand_as(steps),
                                                     rtol=1e-4, atol=1e-7))  # fmt: skip


def _uniform_grid(weight: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` evenly spaced levels (and each weight's nearest level) with the least squared
    error: the clipping range is searched over symmetric quantiles, then refined by fitting the
    offset and step to the assignment (a uniform grid's Lloyd step)."""
    flat = weight.detach().reshape(-1).float()
    best = (math.inf, None, None)
    for tail in (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3):
        low, high = torch.quantile(flat, tail).item(), torch.quantile(flat, 1 - tail).item()
        levels = torch.linspace(low, high, k)
        for _ in range(5):
            index = (flat[:, None] - levels[None, :]).abs().argmin(dim=1)
            if k == 1:
                levels = flat.mean().reshape(1)
                break
            design = torch.stack([torch.ones_like(flat), index.float()], dim=1)
            offset, step = torch.linalg.lstsq(design, flat[:, None]).solution.reshape(-1)
            levels = offset + step * torch.arange(k, dtype=torch.float32)
        index = (flat[:, None] - levels[None, :]).abs().argmin(dim=1)
        error = float((flat - levels[index]).pow(2).sum())
        if error < best[0]:
            best = (error, levels, index)
    return best[1], best[2].reshape(weight.shape)


@torch.no_grad()
def _keep_uniform(layer: CodebookLinear, _inputs: object) -> None:
    """Forward pre-hook: project the codebook back onto an evenly spaced grid (least squares
    over its values, order kept), so fine-tuning moves the grid's offset and step only."""
    values = layer.codebook
    k = values.numel()
    if k > 2:
        order = values.argsort()
        design = torch.stack([torch.ones(k), torch.arange(k, dtype=values.dtype)], dim=1)
        offset, step = torch.linalg.lstsq(design, values[order][:, None]).solution.reshape(-1)
        values[order] = offset + step * torch.arange(k, dtype=values.dtype)


def uniform_quantize(model: nn.Module, bits: int) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a
    :class:`~shared_lib.layers.compressed.CodebookLinear` whose ``2**bits`` values are evenly
    spaced: ``bits``-bit uniform quantization, the baseline of k-means weight sharing at equal
    bits (chapter 07). The range is the one with the least squared error; fine-tuning moves the
    grid (its offset and step) and keeps it uniform, so it stores two numbers per layer.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from shared_lib.book.ch07_comparison import uniform_quantize
        >>> _ = torch.manual_seed(0)
        >>> layer = uniform_quantize(nn.Sequential(nn.Linear(16, 8)), bits=2)[0]
        >>> levels = layer.weight.unique()
        >>> len(levels), torch.allclose(levels.diff(), levels.diff()[0].expand(3))
        (4, True)
    """
    check_int(bits, "bits", minimum=1)

    def make(linear: nn.Linear) -> CodebookLinear:
        levels, index = _uniform_grid(linear.weight, 2**bits)
        layer = CodebookLinear(levels, index, linear.bias)
        layer.register_forward_pre_hook(_keep_uniform)
        return layer

    return _replace_linears(model, make)


# ---------------------------------------------------------------------------------------------
# Magnitude pruning and low-rank factorisation
# ---------------------------------------------------------------------------------------------


def magnitude_prune(model: nn.Module, sparsity: float) -> nn.Module:
    """Zero the ``sparsity`` fraction of smallest-magnitude weights of every ``nn.Linear`` and
    ``nn.Conv2d`` (layer by layer), keeping the zeros through fine-tuning (chapter 07).

    Uses ``torch.nn.utils.prune`` (a mask re-applied before every forward pass); call
    ``torch.nn.utils.prune.remove(module, "weight")`` or :func:`finish_pruning` to make it
    permanent. Biases are kept dense. On a model pruned already, it prunes further among the
    weights still kept, to ``sparsity`` of the whole layer (iterative pruning: see
    :func:`pruning_schedule`).
    """
    sparsity = check_float(sparsity, "sparsity", 0.0, 1.0, high_inclusive=False)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("model holds no nn.Linear or nn.Conv2d layer to prune")
    for layer in layers:
        keep = max(1, round(layer.weight.numel() * (1 - sparsity)))  # never empty a layer
        kept = layer.weight.numel()
        if prune.is_pruned(layer) and hasattr(layer, "weight_mask"):
            kept = int(layer.weight_mask.sum())  # the container prunes among the kept ones
        prune.l1_unstructured(layer, "weight", amount=max(0, kept - keep))
    return model


def pruning_schedule(sparsity: float, rounds: int) -> list[float]:
    """The sparsities of ``rounds`` rounds of iterative pruning that end at ``sparsity``, each
    round removing the same fraction of the weights still kept (chapter 07).

    Examples:
        >>> from shared_lib.book.ch07_comparison import pruning_schedule
        >>> [round(s, 4) for s in pruning_schedule(0.9375, 4)]  # half of what is left, 4 times
        [0.5, 0.75, 0.875, 0.9375]
    """
    sparsity = check_float(sparsity, "sparsity", 0.0, 1.0, high_inclusive=False)
    check_int(rounds, "rounds", minimum=1)
    return [1 - (1 - sparsity) ** ((r + 1) / rounds) for r in range(rounds)]


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
    :class:`~shared_lib.layers.compressed.CodebookLinear` the codebook (4 bytes a value; an evenly
    spaced one, a uniform quantization grid, only its first value and step) plus
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
            values = 2 if _evenly_spaced(tensor) else k  # a uniform grid: first value and step
            total += FLOAT_BYTES * min(values, k)
            total += math.ceil(module.assignment.numel() * index_bits(k) / 8)
        elif name == "weight" and tensor.dim() >= 2:
            total += _dense_or_sparse_bytes(tensor)
        else:
            total += FLOAT_BYTES * tensor.numel()
    return total


def stored_numbers(model: nn.Module) -> int:
    """Unique numbers ``model`` stores: parameters counted once, a pruned tensor by its nonzeros,
    a codebook by its ``k`` values, an evenly spaced one by two (indices are not numbers we
    learn); chapter 07."""
    total = 0
    for module, name, tensor in _weights(model):
        if name == "weight" and tensor.dim() >= 2:
            total += int(torch.count_nonzero(tensor))
        elif isinstance(module, CodebookLinear) and name == "codebook" and _evenly_spaced(tensor):
            total += min(2, tensor.numel())  # a uniform grid: first value and step
        else:
            total += tensor.numel()
    return total
