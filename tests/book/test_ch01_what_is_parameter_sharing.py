"""Chapter 01: the families of sharing, their counts and maps, and the tie patterns of
convolution and set layers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

import shared_lib as sl
from shared_lib.book.ch01_what_is_parameter_sharing import (
    FAMILIES,
    SIZES,
    family_counts,
    family_example,
    plot_family,
    plot_sharing_patterns,
    sharing_patterns,
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


def test_family_counts_follow_the_examples_and_the_saving_grows_with_scale():
    for family in FAMILIES:
        counts = family_counts(family)
        example = family_example(family, 2)
        assert counts[1] == (example.size, example.unique, example.per_use)
        ratios = [untied / stored for _, stored, untied in counts]
        assert ratios == sorted(ratios) and ratios[0] > 1, family
    tied_lm = family_counts("input/output (tied LM)")
    assert all(untied < 2 * stored for _, stored, untied in tied_lm)  # two uses at most


def test_plots_draw_and_reject_empty_input():
    plot_family(FAMILIES[1], 1)
    ax = plot_assignment(sl.layer_assignment(6, 3, "cycle_rev"))
    assert ax.get_yticklabels()[0].get_text() == "layer 1"
    with pytest.raises(ValueError):
        plot_sharing_map([])
    plt.close("all")


def test_deep_sets_family_counts_phi_once_per_element():
    example = family_example("elements (Deep Sets)", 3)
    phi, rho = (sl.count_parameters(m) for m in (example.model.phi, example.model.rho))
    assert example.per_use == example.size * phi + rho
    assert example.unique == phi + rho


@pytest.mark.parametrize(("n", "kernel_size"), [(5, 3), (6, 3), (8, 5)])
def test_sharing_patterns_count_their_stored_numbers(n, kernel_size):
    patterns = sharing_patterns(n, kernel_size)
    conv = patterns["1-D convolution"]
    assert int(conv.max()) + 1 == kernel_size
    assert int((conv >= 0).sum()) == n * kernel_size  # a band of width kernel_size per row
    assert int(patterns["cyclic shifts"].max()) + 1 == n
    assert int(patterns["all permutations"].max()) + 1 == 2
    # the 3-tap conv's entries are a subset of the circulant's diagonals
    circulant = patterns["cyclic shifts"]
    for value in range(kernel_size):
        assert circulant[conv == value].unique().numel() == 1


def test_sharing_patterns_bad_input_and_plot():
    with pytest.raises(ValueError, match="kernel_size"):
        sharing_patterns(6, 4)
    with pytest.raises(ValueError, match="n"):
        sharing_patterns(1)
    plot_sharing_patterns(5)
    plt.close("all")
