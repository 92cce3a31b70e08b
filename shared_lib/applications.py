"""Chapter 04's explorer: for one application, its counts, sharing map and headline result."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from shared_lib.counting import count_parameters
from shared_lib.plotting import PALETTE, book_style, plot_sharing_map
from shared_lib.uses import Use, conv_position_uses, trace_uses, unit_names, unit_of

__all__ = ["Headline", "conv_sequence_uses", "plot_application", "traced_uses"]


def traced_uses(
    model: nn.Module, run: Callable[[], object], units: bool = True
) -> tuple[list[Use], Callable[[str], str] | None]:
    """Uses of ``model`` while ``run()`` runs, per building block (``units``) or per module,
    with the matching ``column_of`` for :func:`shared_lib.plotting.plot_sharing_map`."""
    names = unit_names(model) if units else None
    with torch.no_grad():
        uses = trace_uses(model, run, modules=names)
    return uses, (unit_of(names) if units else None)


def conv_sequence_uses(model: nn.Sequential, length: int) -> tuple[list[Use], Callable[[str], str]]:
    """Uses of a 1-D convolutional ``nn.Sequential`` on a signal of ``length`` samples: one per
    output position of each ``Conv1d`` (the sharing hidden inside the call), one per other layer
    with parameters. Padding must keep the length ("same" convolutions)."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    uses, labels, conv_number = [], {}, 0
    for index, layer in enumerate(model):
        params = list(layer.named_parameters())
        if not params:
            continue
        if isinstance(layer, nn.Conv1d):
            conv_number += 1
            labels[str(index)] = f"conv {conv_number}"
            for use in conv_position_uses(layer, (length,)):
                names = tuple(f"{index}.{name}" for name in use.tensors)
                position = use.label.split()[-1]
                uses.append(Use(f"conv {conv_number} @ t={position}", names, use.numel))
        else:
            labels[str(index)] = f"{type(layer).__name__.lower()} {index}"
            names = tuple(f"{index}.{name}" for name, _ in params)
            uses.append(Use(labels[str(index)], names, count_parameters(layer)))

    def column_of(name: str) -> str:
        return labels[name.split(".")[0]]

    return uses, column_of


@dataclass(frozen=True)
class Headline:
    """An application's headline measurement: per-seed values of the shared and unshared model."""

    measure: str
    shared_label: str
    unshared_label: str
    shared_values: Sequence[float]
    unshared_values: Sequence[float]


def plot_application(
    title: str,
    uses: Sequence[Use],
    unique: int,
    per_use: int,
    headline: Headline,
    shared: bool,
    column_of: Callable[[str], str] | None = None,
) -> Figure:
    """Three panels: stored vs per-use parameters, the sharing map, and the headline result
    (the shown variant in full colour, the other faded; dots are seeds)."""
    if unique < 1 or per_use < unique:
        raise ValueError(f"need 1 <= unique <= per_use, got unique={unique}, per_use={per_use}")
    with book_style():
        figure = plt.figure(figsize=(11, 3.6))
        counts_ax, map_ax, result_ax = figure.subplots(
            1, 3, gridspec_kw={"width_ratios": [1, 2.2, 1.3]}
        )
        counts = [unique, per_use]
        bars = counts_ax.bar(["stored", "per use"], counts, color=PALETTE[:2])
        counts_ax.bar_label(bars, labels=[f"{c:,}" for c in counts], fontsize=8)
        counts_ax.set_ylim(0, 1.2 * max(counts))
        counts_ax.set_ylabel("parameters")
        counts_ax.set_title(f"{per_use / unique:.1f}× uses per stored weight", fontsize=9)
        plot_sharing_map(uses, ax=map_ax, column_of=column_of, max_rows=12, title=title)
        map_ax.set_xlabel("")
        sides = (
            (0, headline.shared_values, headline.shared_label),
            (1, headline.unshared_values, headline.unshared_label),
        )
        for x, values, _ in sides:
            values = np.asarray(values, dtype=float)
            chosen = (x == 0) == shared
            result_ax.bar(x, values.mean(), color=PALETTE[x], alpha=1.0 if chosen else 0.35)
            result_ax.scatter(np.full(len(values), x), values, color="black", s=10, zorder=3)
        result_ax.set_xticks([0, 1], [label for _, _, label in sides])
        result_ax.set_title(headline.measure, fontsize=9)
        figure.tight_layout()
    return figure
