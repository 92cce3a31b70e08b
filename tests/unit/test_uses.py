"""Traced uses, sharing maps, the chapter 01 families and the explorer pattern."""

from __future__ import annotations

import base64

import matplotlib
import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

import shared_lib as sl
from shared_lib.explore import Explorer
from shared_lib.models.small import ElmanRNN
from shared_lib.uses import conv_position_uses, count_per_use, direct_parameters, trace_uses

matplotlib.use("Agg")


def test_trace_counts_every_call_of_a_reused_cell():
    rnn = ElmanRNN(input_size=3, hidden_size=5, num_classes=2)
    x = torch.randn(2, 7, 3)
    uses = trace_uses(rnn, lambda: rnn(x))
    cell_uses = [u for u in uses if u.label.startswith("cell")]
    assert len(cell_uses) == 7
    assert cell_uses[2].label == "cell (call 3)"
    assert count_per_use(uses) == 7 * sl.count_parameters(rnn.cell) + sl.count_parameters(
        rnn.classifier
    )


def test_trace_uses_canonical_names_for_tied_tensors():
    lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
    sl.tie(lm["head"], lm["embed"])
    tokens = torch.randint(0, 10, (2, 3))
    uses = trace_uses(lm, lambda: lm["head"](lm["embed"](tokens)))
    assert [u.tensors for u in uses] == [("embed.weight",), ("embed.weight",)]


def test_trace_removes_its_hooks_even_when_the_run_fails():
    net = nn.Linear(2, 2)

    def boom():
        net(torch.randn(1, 2))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        trace_uses(net, boom)
    assert not net._forward_pre_hooks


def test_direct_parameters_are_what_one_call_reads():
    encoder, decoder = nn.Linear(6, 3), nn.Linear(3, 6)
    sl.tie(decoder, encoder, transpose=True)
    assert direct_parameters(decoder) == [decoder.bias, encoder.weight]  # the original, once
    assert direct_parameters(nn.Sequential(encoder)) == []  # submodules are not included
    with pytest.raises(TypeError, match="module"):
        direct_parameters("decoder")


def test_trace_uses_rejects_module_names_of_the_wrong_type():
    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="modules must be a list"):
        trace_uses(net, lambda: net(torch.randn(1, 2)), modules="0")
    with pytest.raises(ValueError, match="not a submodule"):
        trace_uses(net, lambda: net(torch.randn(1, 2)), modules=["1"])


def test_conv_position_uses_match_locally_connected_count():
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2)
    uses = conv_position_uses(conv, (9, 9))
    assert len(uses) == 5 * 5
    assert count_per_use(uses) == 25 * (3 * 2 * 9 + 3)
    same = nn.Conv1d(1, 1, 3, padding="same")
    assert len(conv_position_uses(same, (10,))) == 10
    with pytest.raises(ValueError, match="input_size"):
        conv_position_uses(conv, (9,))
    with pytest.raises(TypeError, match="conv"):
        conv_position_uses(nn.Linear(2, 2), (3,))
    with pytest.raises(TypeError, match="input_size"):
        conv_position_uses(conv, (9.0, 9))


def test_explorer_static_twin_holds_every_frame():
    def render(kind, n):
        figure, ax = plt.subplots(figsize=(2, 2))
        ax.plot(range(n), label=kind)
        return figure

    explorer = Explorer(render, {"kind": ["a", "b"], "n": [2, 3, 4]}, title="demo")
    twin = explorer.static(dpi=30)
    assert len(twin.frames) == 6 and set(twin.frames) == {
        f"{k}|{n}" for k in "ab" for n in (2, 3, 4)
    }
    page = twin._repr_html_()
    assert page.count("data:image/png;base64,") == 7  # six frames + the first one shown
    assert 'type="range"' in page and "<select" in page
    assert "http" not in page.replace("data:image", "")  # nothing to fetch from the network
    assert explorer.static(dpi=30).uid == twin.uid  # stable ids keep re-executed pages identical


def test_explorer_frames_are_sharp_at_natural_size_and_controls_speak_words():
    import struct

    def render(n_points):
        figure, ax = plt.subplots(figsize=(6, 3))
        ax.plot(range(n_points))
        return figure

    explorer = Explorer(render, {"n_points": [2, 3]}, labels={"n_points": "points per line"})
    twin = explorer.static()
    frame = twin.frames["2"]
    png = base64.b64decode(frame["src"].split(",", 1)[1])
    pixel_width = struct.unpack(">I", png[16:20])[0]  # the IHDR chunk: width, then height
    assert frame["width"] == 6 * 96  # shown at natural size ...
    assert pixel_width >= max(1100, 2 * frame["width"])  # ... rendered at twice that or more
    page = twin._repr_html_()
    assert "<label>points per line" in page and 'data-control="n_points"' in page
    assert f"max-width: min(100%, {frame['width']}px)" in page  # never wider than the column
    assert frame["alt"].endswith("points per line = 2")


def test_explorer_live_builds_widgets():
    pytest.importorskip("ipywidgets")
    explorer = Explorer(lambda kind: plt.figure(), {"kind": ["a", "b"]})
    box = explorer.live()
    assert len(box.children) == 2


def test_explorer_bad_input():
    with pytest.raises(TypeError, match="render"):
        Explorer("nope", {"a": [1]})
    with pytest.raises(ValueError, match="controls"):
        Explorer(lambda: None, {})
    with pytest.raises(TypeError, match="controls"):
        Explorer(lambda a: None, {"a": "xyz"})
    with pytest.raises(ValueError, match="controls"):
        Explorer(lambda a: None, {"a": []})
    with pytest.raises(ValueError, match="labels name controls that do not exist"):
        Explorer(lambda a: None, {"a": [1]}, labels={"b": "bee"})
    with pytest.raises(TypeError, match=r"labels\['a'\]"):
        Explorer(lambda a: None, {"a": [1]}, labels={"a": 3})
