"""Chapter 01, *What is parameter sharing?*: the families of sharing, each as a small model
with its uses traced.

``family_example(family, scale)`` builds one small model per family, runs it, and returns what
the sharing map and the counts need. ``scale`` (1–4) grows the number of uses: image side,
sequence length, depth, number of inputs, number of tasks, vocabulary size, set size.
:func:`sharing_patterns` and :func:`plot_sharing_patterns` draw the tied entries of a 1-D
convolution's matrix next to those of a permutation-equivariant set layer (the symmetry a layer
respects is read off its ties).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib as mpl
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from shared_lib._validation import check_int
from shared_lib.counting import count_parameters
from shared_lib.layers.local import conv_as_dense
from shared_lib.layers.sets import DeepSets, orbit_sharing_pattern
from shared_lib.models import GPT, GPTConfig, TransformerConfig, TransformerEncoder
from shared_lib.models.small import MLP, ElmanRNN, MultiTaskNet, SiameseNet
from shared_lib.plotting import PALETTE, book_style, plot_sharing_map
from shared_lib.uses import Use, conv_position_uses, count_per_use, trace_uses, unit_names, unit_of

__all__ = [
    "FAMILIES",
    "SIZES",
    "FamilyExample",
    "family_counts",
    "family_example",
    "plot_family",
    "plot_sharing_patterns",
    "sharing_patterns",
]

#: Family → (what ``scale`` changes, its value at scales 1, 2, 3, 4).
SIZES: dict[str, tuple[str, tuple[int, ...]]] = {
    "space (CNN)": ("image side", (6, 8, 12, 16)),
    "time (RNN)": ("sequence length", (4, 8, 16, 32)),
    "depth (ALBERT)": ("layers", (2, 4, 8, 12)),
    "inputs (Siamese)": ("inputs", (2, 3, 4, 8)),
    "tasks (multi-task)": ("tasks", (2, 3, 4, 8)),
    "input/output (tied LM)": ("vocabulary", (256, 1024, 8192, 50257)),
    "elements (Deep Sets)": ("set size", (3, 5, 8, 16)),
}


FAMILIES = tuple(SIZES)


@dataclass(frozen=True)
class FamilyExample:
    """A family's model, its traced uses and both counts."""

    family: str
    size_name: str
    size: int
    model: nn.Module
    uses: list[Use]
    column_of: Callable[[str], str] | None

    @property
    def unique(self) -> int:
        """Parameters the model stores (each tensor once)."""
        return count_parameters(self.model)

    @property
    def per_use(self) -> int:
        """Parameters it would store if every use had its own copy."""
        return count_per_use(self.uses)


def _traced(model: nn.Module, run: Callable[[], object]) -> tuple[list[Use], Callable]:
    units = unit_names(model)
    with torch.no_grad():
        uses = trace_uses(model, run, modules=units)
    return uses, unit_of(units)


def family_example(family: str, scale: int = 1) -> FamilyExample:
    """Build, run and trace the small model of ``family`` at ``scale`` (1 to 4)."""
    if family not in SIZES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    size_name, sizes = SIZES[family]
    check_int(scale, "scale", 1, len(sizes))
    size = sizes[scale - 1]
    generator = torch.Generator().manual_seed(0)
    column_of = None

    if family == "space (CNN)":
        model = nn.Conv2d(1, 4, kernel_size=3)
        uses = conv_position_uses(model, (size, size))

        def column_of(name: str) -> str:
            return "conv kernel (weight, bias)"

    elif family == "time (RNN)":
        model = ElmanRNN(input_size=4, hidden_size=8, num_classes=2)
        x = torch.randn(1, size, 4, generator=generator)
        uses, column_of = _traced(model, lambda: model(x))
    elif family == "depth (ALBERT)":
        config = TransformerConfig(
            vocab_size=100, hidden_size=32, num_layers=size, num_heads=2,
            intermediate_size=64, embedding_size=16, max_position=16, share="all",
        )  # fmt: skip
        model = TransformerEncoder(config)
        ids = torch.randint(0, 100, (1, 8), generator=generator)
        uses, column_of = _traced(model, lambda: model(ids))
    elif family == "inputs (Siamese)":
        model = SiameseNet(MLP(64, 32, 16), embedding_size=16)
        xs = [torch.randn(1, 64, generator=generator) for _ in range(size)]

        def run() -> None:
            embeddings = model.embed(*xs)
            model.score((embeddings[0] - embeddings[1]).abs())

        uses, column_of = _traced(model, run)
    elif family == "tasks (multi-task)":
        heads = {f"task{i + 1}": nn.Linear(32, 10) for i in range(size)}
        model = MultiTaskNet(MLP(64, 32, 32), heads)
        x = torch.randn(1, 64, generator=generator)
        uses, column_of = _traced(model, lambda: [model(x, task) for task in heads])
    elif family == "elements (Deep Sets)":
        model = DeepSets.mlp(4, 16, 2)
        xs = torch.randn(1, size, 4, generator=generator)

        def run() -> None:  # φ on every element (one call each), a sum, then ρ
            model.rho(sum(model.phi(xs[:, i]) for i in range(size)))

        uses, column_of = _traced(model, run)
    else:  # input/output (tied LM)
        config = GPTConfig(vocab_size=size, block_size=16, n_layer=1, n_head=2, n_embd=32)
        model = GPT(config)
        idx = torch.randint(0, size, (1, 8), generator=generator)
        uses, column_of = _traced(model, lambda: model(idx))
    return FamilyExample(family, size_name, size, model, uses, column_of)


@functools.cache
def family_counts(family: str) -> tuple[tuple[int, int, int], ...]:
    """``(size, stored, if untied)`` of ``family`` at each of its four scales (cached: the
    explorer draws every scale's counts in every frame).

    Examples:
        >>> from shared_lib.book.ch01_what_is_parameter_sharing import family_counts
        >>> family_counts("time (RNN)")[0]
        (4, 130, 466)
    """
    examples = [family_example(family, scale) for scale in range(1, len(SIZES[family][1]) + 1)]
    return tuple((e.size, e.unique, e.per_use) for e in examples)


def plot_family(family: str, scale: int = 1) -> Figure:
    """The chapter 01 explorer's view of one family: how its two counts grow with the model
    (all four scales, the chosen one marked) and the sharing map at the chosen scale."""
    example = family_example(family, scale)
    sizes, stored, untied = zip(*family_counts(family), strict=True)
    with book_style():
        figure = plt.figure(figsize=(7.5, 3.6))
        counts_ax, map_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 2]})
        positions = range(len(sizes))
        counts_ax.plot(positions, untied, "s--", color=PALETTE[1], label="if untied (per use)")
        counts_ax.plot(positions, stored, "o-", color=PALETTE[0], label="stored (unique)")
        here = scale - 1
        counts_ax.plot([here, here], [stored[here], untied[here]], color="0.3", linewidth=3)
        last = here == len(sizes) - 1  # the label goes on the side with room
        counts_ax.annotate(
            f"{untied[here] / stored[here]:.1f}× fewer",
            (here, (stored[here] * untied[here]) ** 0.5), xytext=(-6 if last else 6, 0),
            textcoords="offset points", va="center", ha="right" if last else "left",
            fontsize=10,
        )  # fmt: skip
        counts_ax.set_yscale("log")
        counts_ax.set_xticks(list(positions), [f"{n:,}" for n in sizes])
        counts_ax.set_xlim(-0.3, len(sizes) - 0.4)
        counts_ax.set_xlabel(example.size_name)
        counts_ax.set_ylabel("parameters (log scale)")
        counts_ax.legend(  # above the axes, clear of the lines
            loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=9, frameon=False
        )
        plot_sharing_map(
            example.uses, ax=map_ax, column_of=example.column_of, max_rows=10,
            title=f"{family}, {example.size_name} = {example.size}",
        )  # fmt: skip
        figure.tight_layout()
    return figure


def sharing_patterns(n: int = 6, kernel_size: int = 3) -> dict[str, torch.Tensor]:
    """Index maps of three ``n × n`` weight matrices: which stored number every entry uses.

    ``"1-D convolution"``: a circular convolution with ``kernel_size`` taps (``-1`` marks a
    structural zero), from :func:`~shared_lib.layers.local.conv_as_dense`; ``"cyclic shifts"``
    and ``"all permutations"``: the orbits of the index pairs under those groups
    (:func:`~shared_lib.layers.sets.orbit_sharing_pattern`): a full circulant, and ``λI + γ11ᵀ``.

    Examples:
        >>> from shared_lib.book.ch01_what_is_parameter_sharing import sharing_patterns
        >>> {name: int(m.max()) + 1 for name, m in sharing_patterns(6).items()}
        {'1-D convolution': 3, 'cyclic shifts': 6, 'all permutations': 2}
    """
    check_int(n, "n", 2)
    check_int(kernel_size, "kernel_size", 1, n)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    conv = nn.Conv2d(
        1, 1, (1, kernel_size), padding=(0, kernel_size // 2), padding_mode="circular",
        bias=False,
    )  # fmt: skip
    _, conv_map = conv_as_dense(conv, (1, 1, n))
    shift = [(i + 1) % n for i in range(n)]
    swap = [1, 0, *range(2, n)]
    return {
        "1-D convolution": conv_map,
        "cyclic shifts": orbit_sharing_pattern([shift]),
        "all permutations": orbit_sharing_pattern([shift, swap]),
    }


def plot_sharing_patterns(n: int = 6, kernel_size: int = 3) -> Figure:
    """Draw :func:`sharing_patterns`: one panel per matrix, entries coloured and lettered by
    the stored number they use, structural zeros white (chapter 01)."""
    patterns = sharing_patterns(n, kernel_size)
    titles = {
        "1-D convolution": f"circular convolution, {kernel_size} taps",
        "cyclic shifts": "tied by cyclic shifts (circulant)",
        "all permutations": "tied by all permutations (λI + γ11ᵀ)",
    }
    with book_style():
        figure, axes = plt.subplots(1, len(patterns), figsize=(10.5, 3.9), layout="constrained")
        for ax, (name, index_map) in zip(axes, patterns.items(), strict=True):
            k = int(index_map.max()) + 1
            colours = [PALETTE[i % len(PALETTE)] for i in range(k)]
            image = index_map.float().masked_fill(index_map < 0, float("nan"))
            ax.imshow(
                image.numpy(), cmap=mpl.colors.ListedColormap(colours), vmin=-0.5,
                vmax=k - 0.5,
            )  # fmt: skip
            letters = ("λ", "γ") if name == "all permutations" else "abcdefghijklmnop"
            for (r, c), idx in zip(
                torch.nonzero(index_map >= 0).tolist(),
                index_map[index_map >= 0].tolist(),
                strict=True,
            ):
                ax.text(c, r, letters[idx], ha="center", va="center", fontsize=9, color="white")
            ax.set_xticks(range(n), [str(j + 1) for j in range(n)])
            ax.set_yticks(range(n), [str(i + 1) for i in range(n)])
            ax.set_xticks([j - 0.5 for j in range(n + 1)], minor=True)
            ax.set_yticks([i - 0.5 for i in range(n + 1)], minor=True)
            ax.grid(which="minor", color="0.85", linewidth=0.6)
            ax.grid(which="major", visible=False)
            ax.tick_params(which="minor", length=0)
            ax.set_xlabel("input element j")
            ax.set_ylabel("output element i")
            ax.set_title(f"{titles[name]}\n{k} stored numbers, {n * n} entries", fontsize=10)
    return figure
