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
inference, for the chapter's comparison of cross-layer weight sharing with key/value sharing;
:func:`kv_cache_curves` and :func:`plot_kv_cache` draw them against context length for the
explorer. :class:`~shared_lib.models.llama.CrossLayerKVDecoder` (in the library) is the
Llama-style decoder with keys and values shared across adjacent layers (cross-layer
attention), and :func:`train_kv_variants` trains it with
multi-head, grouped-query, multi-query and cross-layer sharing on :func:`recall_task`, each at
its own best learning rate.
"""

from __future__ import annotations

import copy
import functools
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from shared_lib._validation import check_instance, check_int
from shared_lib.data import Split
from shared_lib.data.splits import balanced_subset
from shared_lib.models.llama import CrossLayerKVDecoder, DecoderConfig
from shared_lib.training import train_steps

__all__ = [
    "KVSharingResult",
    "LearningCurves",
    "cache_layers",
    "cached_bytes",
    "hold_out",
    "kv_cache_bytes",
    "kv_cache_curves",
    "kv_variants",
    "largest_divisor_at_most",
    "learning_curves",
    "plot_kv_cache",
    "plot_learning_curves",
    "plot_step_costs",
    "recall_task",
    "train_kv_variants",
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


#: Bytes per value → the dtype :func:`shared_lib.models.kv_cache_bytes` sizes a cache in.
_DTYPES = {1: torch.uint8, 2: torch.bfloat16, 4: torch.float32, 8: torch.float64}


def weight_bytes(config, bytes_per_value: int = 2) -> int:
    """Bytes of the stored weights of a model built from a config, counted on the meta device.

    The config is a :class:`~shared_lib.models.transformer.TransformerConfig` or a
    :class:`~shared_lib.models.llama.DecoderConfig` (anything
    :func:`~shared_lib.models.build_model` takes); two bytes per value (fp16/bf16) by default.
    Tied tensors count once.

    Examples:
        ALBERT-base stores about a ninth of BERT-base's weights (12M against 108M parameters):

        >>> from shared_lib.models import DECODER_PRESETS, PRESETS
        >>> round(weight_bytes(PRESETS["bert-base"]) / weight_bytes(PRESETS["albert-base"]), 1)
        9.3
        >>> round(weight_bytes(DECODER_PRESETS["llama-3.2-1b"]) / 2**30, 2)  # GiB, bf16
        2.3
    """
    check_int(bytes_per_value, "bytes_per_value", 1)
    return bytes_per_value * _stored_parameters(config)


@functools.lru_cache(maxsize=64)
def _stored_parameters(config) -> int:
    """Stored parameters of the model a (frozen, hashable) config builds, counted once."""
    from shared_lib.counting import count_parameters
    from shared_lib.models import build_model

    return count_parameters(build_model(config, device="meta"))


def kv_cache_bytes(
    config,
    sequence_length: int,
    batch: int = 1,
    kv_heads: int | None = None,
    kv_layers: int | None = None,
    bytes_per_value: int = 2,
) -> int:
    """Bytes of the key/value cache of a Transformer of this shape decoding ``sequence_length``
    tokens, with the two ways of sharing keys and values as arguments: fewer key/value heads
    per layer, fewer layers that keep a cache.

    The library's :func:`~shared_lib.models.llama.kv_cache_bytes` sizes the cache of a decoder from
    its :class:`~shared_lib.models.llama.DecoderConfig`; this function delegates to it, and
    differs in what it accepts: any config with ``num_layers``, ``num_heads`` and
    ``hidden_size`` (the BERT/ALBERT shapes of a
    :class:`~shared_lib.models.transformer.TransformerConfig` too, as if they decoded), and
    the what-ifs of the chapter: ``kv_heads`` (1 for multi-query, a few for grouped-query
    attention) and ``kv_layers`` (cross-layer KV sharing: layers that compute and keep their
    own keys and values; the others read them). The formula is ``2 (keys and values) ×
    kv_layers × kv_heads × head_dim × sequence × batch × bytes per value``.

    Cross-layer *weight* sharing does not enter it: every layer of ALBERT still computes and
    caches its own keys and values.

    Args:
        config: a :class:`~shared_lib.models.llama.DecoderConfig` or a
            :class:`~shared_lib.models.transformer.TransformerConfig`.
        sequence_length: tokens cached per sequence.
        batch: sequences decoded at once.
        kv_heads: key/value heads per layer (default: the config's, ``num_kv_heads`` of a
            decoder, ``num_heads`` otherwise); must divide ``num_heads``.
        kv_layers: layers that keep their own cache (default: ``num_layers``).
        bytes_per_value: 1, 2 (fp16/bf16), 4 or 8.

    Raises:
        TypeError: a size is not an int.
        ValueError: a size is below 1, ``kv_heads`` does not divide ``num_heads``, or
            ``bytes_per_value`` is not 1, 2, 4 or 8.

    Examples:
        >>> from shared_lib.models import DECODER_PRESETS, PRESETS
        >>> kv_cache_bytes(PRESETS["bert-base"], 512)  # 2 × 12 × 12 × 64 × 512 × 2 bytes
        18874368
        >>> kv_cache_bytes(PRESETS["albert-base"], 512) == kv_cache_bytes(PRESETS["bert-base"], 512)
        True
        >>> llama = DECODER_PRESETS["llama-3.2-1b"]  # 16 layers, 8 KV heads of 64
        >>> kv_cache_bytes(llama, 1), kv_cache_bytes(llama, 1, kv_layers=8)  # + CLA pairs
        (32768, 16384)
    """
    import dataclasses

    from shared_lib import models

    check_int(sequence_length, "sequence_length", 1)
    check_int(batch, "batch", 1)
    check_int(bytes_per_value, "bytes_per_value", 1)
    if bytes_per_value not in _DTYPES:
        raise ValueError(f"bytes_per_value must be one of {sorted(_DTYPES)}, got {bytes_per_value}")
    if isinstance(config, models.DecoderConfig):
        decoder = config
    else:  # the shape of an encoder (or any config with these fields), as a decoder's
        decoder = models.DecoderConfig(
            vocab_size=1,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            num_heads=config.num_heads,
            intermediate_size=1,
            head_dim=config.hidden_size // config.num_heads,
        )
    if kv_heads is not None:
        check_int(kv_heads, "kv_heads", 1)
        decoder = dataclasses.replace(decoder, num_kv_heads=kv_heads)
    if kv_layers is not None:
        check_int(kv_layers, "kv_layers", 1)
        decoder = dataclasses.replace(decoder, num_layers=kv_layers)
    return models.kv_cache_bytes(decoder, sequence_length, batch, dtype=_DTYPES[bytes_per_value])


def cache_layers(num_layers: int, share_every: int) -> int:
    """Layers that compute and keep keys and values when groups of ``share_every`` adjacent
    layers share one cache (the first of each group computes it): ``ceil(L / share_every)``.

    Examples:
        >>> cache_layers(16, 2), cache_layers(5, 2), cache_layers(4, 1)
        (8, 3, 4)
    """
    check_int(num_layers, "num_layers", 1)
    check_int(share_every, "share_every", 1)
    return -(-num_layers // share_every)


def cached_bytes(cache: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> int:
    """Bytes of the distinct tensors in a cache from
    :meth:`~shared_lib.models.llama.CrossLayerKVDecoder.kv_cache` (a tensor that several layers
    read counts once): what a decoder would keep for these tokens."""
    distinct = {id(t): t for pair in cache for t in pair}
    return sum(t.numel() * t.element_size() for t in distinct.values())


def recall_task(
    n: int, pairs: int = 6, keys: int = 8, values: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Associative recall, a language-modelling task that needs attention (chapter 03).

    Each sequence first lists ``pairs`` distinct keys with a random value each, one token per
    pair (token ``key × values + value``, of ``keys × values`` pair tokens), then asks for every
    key again in a random order (token ``keys × values + key``). The target after each question
    is the value of that key (token ``keys × values + keys + value``); the other positions are
    -1 (ignored). To answer, a model must find the earlier pair whose key matches the question
    and read its value out: a job for attention, which one layer can do. The vocabulary has
    ``keys × values + keys + values`` tokens.

    Args:
        n: number of sequences.
        pairs: pairs per sequence (the sequence is ``2 × pairs`` tokens).
        keys: number of distinct keys, at least ``pairs``.
        values: number of distinct values.
        seed: fixes the sequences.

    Returns:
        ``tokens`` and ``targets``, both ``(n, 2 × pairs)`` int64.

    Raises:
        TypeError: an argument is not an int.
        ValueError: an argument is below its minimum, or ``keys < pairs``.

    Examples:
        >>> tokens, targets = recall_task(1, pairs=2, keys=3, values=4, seed=0)
        >>> tokens.shape, targets.tolist()[0][:2], (targets >= 0).sum().item()
        (torch.Size([1, 4]), [-1, -1], 2)
        >>> stored = {int(t) // 4: int(t) % 4 for t in tokens[0, :2]}  # key: value
        >>> asked = [int(t) - 12 for t in tokens[0, 2:]]
        >>> [stored[key] for key in asked] == [int(t) - 15 for t in targets[0, 2:]]
        True
    """
    check_int(n, "n", 1)
    check_int(pairs, "pairs", 1)
    check_int(values, "values", 1)
    check_int(keys, "keys", pairs)
    check_int(seed, "seed", 0)
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.rand(n, keys, generator=generator).argsort(dim=1)[:, :pairs]
    answers = torch.randint(0, values, (n, pairs), generator=generator)
    order = torch.rand(n, pairs, generator=generator).argsort(dim=1)
    asked, recalled = chosen.gather(1, order), answers.gather(1, order)
    questions = keys * values  # first question token; the value tokens follow the questions
    tokens = torch.cat([chosen * values + answers, questions + asked], dim=1)
    targets = torch.full_like(tokens, -1)
    targets[:, pairs:] = questions + keys + recalled
    return tokens, targets


def kv_variants(base: DecoderConfig, gqa_heads: int) -> dict[str, tuple[DecoderConfig, int]]:
    """Multi-head, grouped-query, multi-query and cross-layer variants of ``base`` with exactly
    the same number of parameters (chapter 03).

    ``base`` is the multi-head model (``num_kv_heads=None``). The key/value projection
    parameters a variant saves are given back to the feed-forward: a gated feed-forward holds
    ``3 × hidden × intermediate`` weights, so ``saved / (3 × hidden)`` is added to the
    intermediate width of every layer. The cross-layer variant keeps all the heads and shares
    keys and values in adjacent pairs of layers
    (:class:`~shared_lib.models.llama.CrossLayerKVDecoder` with ``share_every=2``); its
    readers' missing projections are spread over all the layers.

    Args:
        base: the multi-head config, without biases on the projections.
        gqa_heads: key/value heads of the grouped-query variant (dividing ``num_heads``).

    Returns:
        Name → ``(config, share_every)`` for :func:`train_kv_variants`.

    Raises:
        ValueError: ``base`` has ``num_kv_heads`` or attention biases, an odd number of layers,
            or sizes for which a saving is not a whole number of feed-forward units.

    Examples:
        >>> from shared_lib.counting import count_parameters
        >>> from shared_lib.models import DecoderConfig
        >>> base = DecoderConfig(vocab_size=80, hidden_size=24, num_layers=2, num_heads=4,
        ...                      intermediate_size=48)
        >>> variants = kv_variants(base, gqa_heads=2)
        >>> {name: config.intermediate_size for name, (config, _) in variants.items()}
        {'multi-head': 48, 'grouped-query': 56, 'multi-query': 60, 'cross-layer': 56}
        >>> {count_parameters(CrossLayerKVDecoder(*v)) for v in variants.values()}
        {15480}
    """
    import dataclasses

    check_instance(base, "base", DecoderConfig, "DecoderConfig")
    if base.num_kv_heads is not None or base.attention_bias:
        raise ValueError("base must be multi-head (num_kv_heads=None) without attention biases")
    if base.num_layers % 2:
        raise ValueError(f"base.num_layers must be even for pairs of layers, got {base.num_layers}")
    hidden, width = base.hidden_size, base.head_width
    unit = 3 * hidden  # parameters of one more feed-forward unit

    def wider(saved_per_layer: int) -> int:
        if saved_per_layer % unit:
            raise ValueError(
                f"saving {saved_per_layer} parameters per layer is not a whole number of "
                f"feed-forward units of {unit}; choose other sizes"
            )
        return base.intermediate_size + saved_per_layer // unit

    def saved(kv_heads: int) -> int:  # k_proj and v_proj, per layer
        return 2 * hidden * (base.num_heads - kv_heads) * width

    check_int(gqa_heads, "gqa_heads", 1)
    cross_layer_saving = 2 * hidden * base.num_heads * width // 2  # half the layers, spread
    replace = dataclasses.replace
    return {
        "multi-head": (base, 1),
        "grouped-query": (
            replace(base, num_kv_heads=gqa_heads, intermediate_size=wider(saved(gqa_heads))),
            1,
        ),
        "multi-query": (replace(base, num_kv_heads=1, intermediate_size=wider(saved(1))), 1),
        "cross-layer": (replace(base, intermediate_size=wider(cross_layer_saving)), 2),
    }


@dataclass(frozen=True)
class KVSharingResult:
    """The key/value-sharing experiment of chapter 03, one entry per variant.

    Attributes:
        parameters: stored parameters of each variant.
        cache_bytes_per_token: bytes its key/value cache grows by per token (bf16, formula).
        measured_cache_bytes: bytes of the distinct key/value tensors the trained model
            really produced for one sequence of the task (float32).
        validation_loss: learning rate → loss on the recalled values of the validation set.
        learning_rate: the rate with the lowest validation loss.
        test_loss: the loss on the recalled values of the test set at that rate.
        test_accuracy: the fraction of recalled values predicted right, at that rate.
    """

    parameters: dict[str, int]
    cache_bytes_per_token: dict[str, int]
    measured_cache_bytes: dict[str, int]
    validation_loss: dict[str, dict[float, float]]
    learning_rate: dict[str, float]
    test_loss: dict[str, float]
    test_accuracy: dict[str, float]

    def table(self) -> str:
        """A text table, one row per variant."""
        lines = [
            f"{'variant':<28}{'parameters':>11}{'KV bytes/token':>15}{'lr':>8}"
            f"{'test loss':>10}{'accuracy':>9}"
        ]
        for name in self.parameters:
            lines.append(
                f"{name:<28}{self.parameters[name]:>11,}{self.cache_bytes_per_token[name]:>15,}"
                f"{self.learning_rate[name]:>8g}{self.test_loss[name]:>10.3f}"
                f"{self.test_accuracy[name]:>9.3f}"
            )
        return "\n".join(lines)


def train_kv_variants(
    variants: Mapping[str, tuple[DecoderConfig, int]],
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    learning_rates: Sequence[float] = (3e-3, 1e-2),
    steps: int = 200,
    batch_size: int = 32,
    seed: int = 0,
) -> KVSharingResult:
    """Train each variant (a :class:`~shared_lib.models.llama.CrossLayerKVDecoder`) at every
    learning rate, keep the rate best on validation and report the test loss there (chapter 03).

    All the rates of one variant train together, vectorised with :func:`torch.func.vmap`
    (Adam per model with its own rate), from the same initialisation (fixed by ``seed``) and on
    the same minibatches, drawn with replacement from ``train`` in an order fixed by ``seed``;
    every variant sees the same minibatches too. The losses are the mean cross-entropy on the
    targets that are not -1. The global random state is left untouched.

    Args:
        variants: name → ``(config, share_every)``.
        train: ``(tokens, targets)`` to draw minibatches from.
        validation: ``(tokens, targets)`` that choose the learning rate.
        test: ``(tokens, targets)`` that measure the chosen model.
        learning_rates: Adam's rates to try.
        steps: optimizer steps.
        batch_size: sequences per step.
        seed: fixes the initialisation and the minibatches.

    Returns:
        The measurements of every variant.
    """
    from torch.func import functional_call, stack_module_state, vmap

    from shared_lib.counting import count_parameters

    if not variants:
        raise ValueError("variants must name at least one (config, share_every)")
    rates = tuple(float(rate) for rate in learning_rates)
    if not rates or not all(rate > 0 for rate in rates):
        raise ValueError(f"learning_rates must be a non-empty sequence of rates > 0, got {rates}")
    check_int(steps, "steps", 1)
    check_int(batch_size, "batch_size", 1)
    tokens, targets = train
    result = {field: {} for field in KVSharingResult.__dataclass_fields__}
    for name, (config, share_every) in variants.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CrossLayerKVDecoder(config, share_every)
        copies = [copy.deepcopy(model) for _ in rates]
        params, buffers = stack_module_state(copies)
        template = copy.deepcopy(model).to("meta")

        def loss_of(p, b, x, y, template=template):
            return functional_call(template, (p, b), (x, y))[1]

        def logits_of(p, b, x, template=template):
            return functional_call(template, (p, b), (x,))[0]

        optimizer = _PerModelAdam(params.values(), torch.tensor(rates))
        generator = torch.Generator().manual_seed(seed)

        def minibatches(generator=generator):
            for _ in range(steps):
                yield torch.randint(0, len(tokens), (batch_size,), generator=generator)

        batched_loss = vmap(loss_of, in_dims=(0, 0, None, None))
        train_steps(
            optimizer,
            minibatches(),
            lambda index, f=batched_loss, p=params, b=buffers: f(
                p, b, tokens[index], targets[index]
            ).sum(),
        )
        with torch.no_grad():
            evaluate = vmap(logits_of, in_dims=(0, 0, None))
            scores = {}
            for split, (x, y) in (("validation", validation), ("test", test)):
                logits = evaluate(params, buffers, x)  # (rates, n, length, vocab)
                keep = y >= 0
                chosen_logits = logits[:, keep]  # (rates, targets, vocab)
                losses = torch.stack(
                    [F.cross_entropy(row, y[keep]) for row in chosen_logits]
                ).tolist()
                right = (chosen_logits.argmax(-1) == y[keep]).float().mean(1).tolist()
                scores[split] = (losses, right)
            best = min(range(len(rates)), key=lambda i: scores["validation"][0][i])
            state = {key: value[best] for key, value in params.items()}
            model.load_state_dict(state, strict=False)
            cache = model.kv_cache(test[0][:1])
        result["parameters"][name] = count_parameters(model)
        kv_layers = cache_layers(config.num_layers, share_every)
        result["cache_bytes_per_token"][name] = kv_cache_bytes(config, 1, kv_layers=kv_layers)
        result["measured_cache_bytes"][name] = cached_bytes(cache)
        result["validation_loss"][name] = dict(zip(rates, scores["validation"][0], strict=True))
        result["learning_rate"][name] = rates[best]
        result["test_loss"][name] = scores["test"][0][best]
        result["test_accuracy"][name] = scores["test"][1][best]
    return KVSharingResult(**result)


def largest_divisor_at_most(n: int, limit: int) -> int:
    """The largest divisor of ``n`` that is at most ``limit`` (a valid count of key/value heads
    for ``n`` query heads).

    Examples:
        >>> [largest_divisor_at_most(heads, 4) for heads in (32, 14, 9)]
        [4, 2, 3]
    """
    check_int(n, "n", 1)
    check_int(limit, "limit", 1)
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def kv_cache_curves(
    config: DecoderConfig, lengths: Sequence[int], gqa_heads: int, batch: int = 1
) -> dict[str, list[int]]:
    """Bytes (bf16) of the key/value cache against context length under each way of sharing
    keys and values, and of the weights, for one decoder (chapter 03's explorer).

    The schemes: multi-head attention (a key/value head per query head), the config's own
    attention, grouped-query attention with ``gqa_heads`` key/value heads (the largest divisor
    of the query heads up to it), multi-query attention (one), and the config's own attention
    with cross-layer attention in adjacent pairs (half the layers keep a cache). The label of
    each curve says its key/value heads and cache layers.

    Args:
        config: a :class:`~shared_lib.models.llama.DecoderConfig`.
        lengths: context lengths (tokens per sequence).
        gqa_heads: key/value heads wanted for the grouped-query curve.
        batch: sequences decoded at once.

    Returns:
        Curve label → bytes at each length; the key ``"weights"`` holds the (constant) bytes of
        the weights.

    Examples:
        >>> from shared_lib.models import DECODER_PRESETS
        >>> curves = kv_cache_curves(DECODER_PRESETS["llama-3.2-1b"], [1, 2], gqa_heads=4)
        >>> {label: values[0] for label, values in curves.items() if label != "weights"}
        ... # doctest: +NORMALIZE_WHITESPACE
        {'multi-head: 32 KV heads × 16 layers': 131072,
         'as published: 8 KV heads × 16 layers': 32768,
         'grouped-query: 4 KV heads × 16 layers': 16384,
         'multi-query: 1 KV head × 16 layers': 4096,
         'as published + cross-layer pairs: 8 KV heads × 8 layers': 16384}
    """
    check_instance(config, "config", DecoderConfig, "DecoderConfig")
    lengths = [check_int(length, "lengths[...]", 1) for length in lengths]
    layers, heads = config.num_layers, config.num_heads
    gqa = largest_divisor_at_most(heads, gqa_heads)
    schemes = {  # label: (kv heads, cache layers)
        f"multi-head: {heads} KV heads × {layers} layers": (heads, layers),
        f"as published: {config.kv_heads} KV heads × {layers} layers": (config.kv_heads, layers),
        f"grouped-query: {gqa} KV heads × {layers} layers": (gqa, layers),
        f"multi-query: 1 KV head × {layers} layers": (1, layers),
        f"as published + cross-layer pairs: {config.kv_heads} KV heads × "
        f"{cache_layers(layers, 2)} layers": (config.kv_heads, cache_layers(layers, 2)),
    }
    curves = {
        label: [kv_cache_bytes(config, n, batch, kv, kv_layers) for n in lengths]
        for label, (kv, kv_layers) in schemes.items()
    }
    curves["weights"] = [weight_bytes(config)] * len(lengths)
    return curves


def plot_kv_cache(curves: Mapping[str, Sequence[int]], lengths: Sequence[int], title: str = ""):
    """Key/value cache (GiB) against context length, one line per scheme, and the weights as a
    dashed line (chapter 03's explorer); both axes logarithmic.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    from shared_lib.plotting import PALETTE, book_style

    if "weights" not in curves:
        raise ValueError("curves must hold 'weights' (from kv_cache_curves)")
    with book_style():
        figure, ax = plt.subplots(figsize=(7.4, 4.0))
        schemes = [label for label in curves if label != "weights"]
        for i, label in enumerate(schemes):
            ax.plot(lengths, [b / 2**30 for b in curves[label]], marker="o", ms=3,
                    color=PALETTE[i % len(PALETTE)], label=label)  # fmt: skip
        ax.plot(lengths, [b / 2**30 for b in curves["weights"]], ls="--", color="black",
                label="weights (bf16)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (tokens, one sequence)")
        ax.set_ylabel("memory (GiB, bf16)")
        ax.set_title(title)
        ax.legend(fontsize=10, loc="upper left")
        figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.15)
    return figure


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
        figure, ax = plt.subplots(figsize=(7.4, 3.8))
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
                    fontsize=10,
                )
        ax.set_xticks(range(len(labels)), [textwrap.fill(label, 15) for label in labels])
        ax.set_ylim(0, 1.35)
        ax.set_ylabel("fraction of the largest\nvalue in the sweep")
        ax.set_title(f"{layers} layers, share={share!r}")
        ax.legend(loc="upper center", ncol=len(names), fontsize=10)
        figure.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.22)  # no tight bbox here
    return figure
