"""TODO docstring."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

import shared_lib as sl
from shared_lib.book.ch01_what_is_parameter_sharing import (
    FAMILIES,
    SIZES,
    family_example,
    plot_family,
)
from shared_lib.plotting import plot_assignment, plot_sharing_map


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_stores_less_than_its_uses(family):
    for scale in (1, 4):
        example = family_example(family, scale)
        assert example.size == SIZES[family][1][scale - 1]
        assert example.unique == sl.count_parameters(example.model)
        assert example.per_use > example.unique


def test_family_bad_input():
    with pytest.raises(ValueError, match="family"):
        family_example("space")
    with pytest.raises(ValueError, match="scale"):
        family_example(FAMILIES[0], 5)


def test_plots_draw_and_reject_empty_input():
    plot_family(FAMILIES[1], 1)
    ax = plot_assignment(sl.layer_assignment(6, 3, "cycle_rev"))
    assert ax.get_yticklabels()[0].get_text() == "layer 1"
    with pytest.raises(ValueError):
        plot_sharing_map([])
    plt.close("all")
