"""Chapter 03's experiments: learning curves (vectorised seeds, per-model learning rates chosen
on validation data), the step-cost figure, the inference memories (weights, KV cache), and the
key/value-sharing experiment (the cross-layer decoder, the recall task, the trained variants)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from shared_lib.book.ch03_advantages import (
    LearningCurves,
    cache_layers,
    cached_bytes,
    hold_out,
    kv_cache_bytes,
    kv_cache_curves,
    kv_variants,
    largest_divisor_at_most,
    learning_curves,
    plot_kv_cache,
    plot_learning_curves,
    plot_step_costs,
    recall_task,
    train_kv_variants,
    weight_bytes,
)
from shared_lib.data.sequences import make_motif_task
from shared_lib.data.splits import Split
from shared_lib.models import CrossLayerKVDecoder
from shared_lib.models.small import StepRNN


def tiny_task() -> Split:
    x, y = make_motif_task(300, length=5, vocab=3, motif=(0,), seed=0)
    return Split(x[:200], y[:200], x[200:], y[200:])


def test_plot_step_costs_draws_the_model_and_its_twin():
    import matplotlib.pyplot as plt

    costs = {
        (depth, share): {"parameters (k)": depth * (1 if share == "all" else 5), "FLOPs (G)": 2.0}
        for depth in (2, 4)
        for share in ("none", "all")
    }
    figure = plot_step_costs(costs, 4, "all")
    ax = figure.axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([4 / 20, 1.0, 1.0, 1.0])  # fractions of each cost's maximum
    plt.close(figure)
    with pytest.raises(ValueError, match="no costs"):
        plot_step_costs(costs, 8, "all")


def test_learning_curves_train_each_model_as_if_alone():
    data = tiny_task()

    def factory():
        return StepRNN(5, 3, 8, 2)

    both = learning_curves({"rnn": factory}, data, sizes=[10, 40], seeds=(0, 1), steps=15)
    alone = learning_curves({"rnn": factory}, data, sizes=[40], seeds=(1,), steps=15)
    assert both.accuracy["rnn"].shape == (2, 2)
    assert ((both.accuracy["rnn"] >= 0) & (both.accuracy["rnn"] <= 1)).all()
    # Training several seeds and sizes together (vmap) changes nothing for any one of them,
    # up to float rounding (at most one test example of 100).
    assert abs(both.accuracy["rnn"][1, 1] - alone.accuracy["rnn"][0, 0]) <= 0.01
    state = torch.get_rng_state()
    learning_curves({"rnn": factory}, data, sizes=[10], seeds=(0,), steps=2)
    assert torch.equal(torch.get_rng_state(), state)


def test_learning_curves_validate_their_arguments():
    data = tiny_task()
    with pytest.raises(ValueError, match="factories"):
        learning_curves({}, data, sizes=[10])
    with pytest.raises(TypeError, match=r"factories\['a'\]"):
        learning_curves({"a": 3}, data, sizes=[10])
    with pytest.raises(TypeError, match="data"):
        learning_curves({"a": nn.Linear}, (data.x_train, data.y_train), sizes=[10])
    with pytest.raises(ValueError, match="increasing"):
        learning_curves({"a": nn.Linear}, data, sizes=[20, 10])
    with pytest.raises(ValueError, match="exceeds"):
        learning_curves({"a": nn.Linear}, data, sizes=[10, 1000])
    with pytest.raises(ValueError, match="lr"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=0.0)
    with pytest.raises(ValueError, match="lr"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=())
    with pytest.raises(ValueError, match="validation"):
        learning_curves({"a": nn.Linear}, data, sizes=[10], lr=(1e-3, 1e-2))


def test_a_learning_rate_sweep_keeps_the_rate_best_on_validation():
    data = tiny_task()

    def factory():
        return StepRNN(5, 3, 8, 2)

    rates = (1e-4, 3e-2)
    validation = (data.x_test[:50], data.y_test[:50])
    swept = learning_curves(
        {"rnn": factory}, data, sizes=[10, 40], seeds=(0, 1), steps=15, lr=rates,
        validation=validation,
    )  # fmt: skip
    assert set(swept.learning_rates["rnn"]) <= set(rates)
    # Each rate trained alone, with torch's own Adam: the sweep reports the test accuracy of the
    # rate that is best on validation, size by size.
    for i, size in enumerate((10, 40)):
        alone = {
            rate: learning_curves(
                {"rnn": factory},
                data,
                sizes=[size],
                seeds=(0, 1),
                steps=15,
                lr=rate,
                validation=validation,
            )
            for rate in rates
        }
        chosen = swept.learning_rates["rnn"][i]
        assert np.abs(swept.accuracy["rnn"][i] - alone[chosen].accuracy["rnn"][0]).max() <= 0.01
        assert alone[chosen].learning_rates == {"rnn": (chosen,)}


def test_hold_out_splits_the_pool_and_keeps_the_test_set():
    data = tiny_task()
    pool, (x_val, y_val) = hold_out(data, 40, seed=3)
    assert len(pool.y_train) == 160 and len(y_val) == 40
    assert torch.equal(pool.x_test, data.x_test)
    together = torch.cat([pool.x_train, x_val]).flatten(1).tolist()
    assert sorted(together) == sorted(data.x_train.flatten(1).tolist())  # a partition of the pool
    assert torch.bincount(y_val).tolist() == [20, 20]  # class-balanced
    with pytest.raises(ValueError, match="n must be below"):
        hold_out(data, 200, seed=0)


def test_inference_memory_weights_shrink_with_sharing_the_kv_cache_does_not():
    from shared_lib.models import PRESETS

    bert, albert = PRESETS["bert-large"], PRESETS["albert-large"]
    assert weight_bytes(bert) > 15 * weight_bytes(albert)
    assert kv_cache_bytes(bert, 512) == kv_cache_bytes(albert, 512) == 2 * 24 * 1024 * 512 * 2
    assert kv_cache_bytes(albert, 512, kv_heads=1) * 16 == kv_cache_bytes(albert, 512)
    assert kv_cache_bytes(albert, 512, kv_layers=12, batch=2) == kv_cache_bytes(albert, 512)
    with pytest.raises(TypeError):
        kv_cache_bytes(albert, 512.0)


def test_learning_curve_summaries():
    curves = LearningCurves(
        sizes=(10, 100, 1000),
        seeds=(0, 1),
        accuracy={
            "shared": np.array([[0.8, 0.6], [0.9, 0.9], [0.9, 0.95]]),
            "unshared": np.array([[0.5, 0.5], [0.8, 0.9], [0.95, 1.0]]),
        },
    )
    assert np.allclose(curves.mean("shared"), [0.7, 0.9, 0.925])
    assert np.allclose(curves.std("unshared"), [0.0, 0.05, 0.025])
    assert np.allclose(curves.gap("shared", "unshared")[:, 0], [0.3, 0.1, -0.05])
    assert curves.crossing("shared", "unshared") == 1000
    assert curves.crossing("shared", "shared") is None
    assert "shared" in curves.table() and "0.700 ± 0.100" in curves.table()
    ax = plot_learning_curves(curves, title="test")
    assert ax.get_xlabel() == "training examples"
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


# ---------------------------------------------------------------------------------------------
# Sharing keys and values.


def test_the_chapter_kv_cache_delegates_to_the_library():
    import dataclasses

    from shared_lib.models import DECODER_PRESETS
    from shared_lib.models import kv_cache_bytes as library_kv_cache_bytes

    for config in DECODER_PRESETS.values():
        assert kv_cache_bytes(config, 8192, batch=2) == library_kv_cache_bytes(config, 8192, 2)
        multi_head = dataclasses.replace(config, num_kv_heads=config.num_heads)
        assert kv_cache_bytes(config, 100, kv_heads=config.num_heads) == (
            library_kv_cache_bytes(multi_head, 100)
        )
    with pytest.raises(ValueError, match="bytes_per_value"):
        kv_cache_bytes(DECODER_PRESETS["llama-3.2-1b"], 1, bytes_per_value=3)
    with pytest.raises(ValueError, match="must divide"):
        kv_cache_bytes(DECODER_PRESETS["llama-3.2-1b"], 1, kv_heads=5)


def small_config(**changes):
    from shared_lib.models import DecoderConfig

    fields = dict(vocab_size=80, hidden_size=24, num_layers=4, num_heads=4, intermediate_size=48)
    return DecoderConfig(**{**fields, **changes})


def test_cross_layer_decoder_without_sharing_is_the_decoder():
    from shared_lib.models import Decoder

    config = small_config(num_kv_heads=2)
    torch.manual_seed(0)
    plain = Decoder(config)
    ours = CrossLayerKVDecoder(config, share_every=1)
    ours.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 80, (3, 7))
    targets = torch.randint(-1, 80, (3, 7))
    (expected, expected_loss), (got, loss) = plain(tokens, targets), ours(tokens, targets)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(loss, expected_loss, atol=1e-5)


def test_two_layers_really_read_one_cache():
    config = small_config()
    torch.manual_seed(0)
    model = CrossLayerKVDecoder(config, share_every=2)
    assert model.cache_sources == [0, 0, 2, 2]
    for i in (1, 3):
        assert model.layers[i].attention.k_proj is None
        assert model.layers[i].attention.v_proj is None
    tokens = torch.randint(0, 80, (2, 9))
    cache = model.kv_cache(tokens)
    assert cache[0] is cache[1] and cache[2] is cache[3] and cache[1] is not cache[2]
    # Only layer 0's key/value projection shapes what layers 0 and 1 read: change it and the
    # output moves; the readers have none to change.
    before = model(tokens)[0]
    with torch.no_grad():
        model.layers[0].attention.v_proj.weight.add_(0.5)
    assert not torch.allclose(model(tokens)[0], before)
    # The bytes kept are those of the formula with half the layers keeping a cache (fp32).
    assert cached_bytes(cache) == kv_cache_bytes(config, 9, batch=2, kv_layers=2, bytes_per_value=4)
    assert cache_layers(4, 2) == 2 and cache_layers(5, 2) == 3
    # The gradient of a shared key/value projection is the sum over the layers that read it.
    model.zero_grad()
    model(tokens, torch.randint(0, 80, (2, 9)))[1].backward()
    assert model.layers[0].attention.k_proj.weight.grad.abs().sum() > 0


def test_kv_variants_match_parameters_and_halve_or_quarter_the_cache():
    from shared_lib.counting import count_parameters

    variants = kv_variants(small_config(num_layers=2), gqa_heads=2)
    counts = {name: count_parameters(CrossLayerKVDecoder(*v)) for name, v in variants.items()}
    assert len(set(counts.values())) == 1
    tokens = torch.randint(0, 80, (1, 6))
    bytes_kept = {
        name: cached_bytes(CrossLayerKVDecoder(*v).kv_cache(tokens)) for name, v in variants.items()
    }
    full = bytes_kept["multi-head"]
    assert bytes_kept == {
        "multi-head": full,
        "grouped-query": full // 2,
        "multi-query": full // 4,
        "cross-layer": full // 2,
    }
    with pytest.raises(ValueError, match="multi-head"):
        kv_variants(small_config(num_kv_heads=2), gqa_heads=2)
    with pytest.raises(ValueError, match="even"):
        kv_variants(small_config(num_layers=3), gqa_heads=2)
    with pytest.raises(ValueError, match="whole number"):
        kv_variants(small_config(hidden_size=32, intermediate_size=64), gqa_heads=2)


def test_recall_task_asks_for_stored_values():
    tokens, targets = recall_task(50, pairs=5, keys=7, values=3, seed=1)
    assert tokens.shape == targets.shape == (50, 10)
    assert (targets[:, :5] == -1).all() and (targets[:, 5:] >= 0).all()
    stored = tokens[:, :5]
    for row in range(50):
        memory = {int(t) // 3: int(t) % 3 for t in stored[row]}
        assert len(memory) == 5  # distinct keys
        for question, answer in zip(tokens[row, 5:], targets[row, 5:], strict=True):
            assert memory[int(question) - 21] == int(answer) - 28
    with pytest.raises(ValueError):
        recall_task(5, pairs=8, keys=4)


def test_train_kv_variants_measures_every_variant():
    variants = kv_variants(small_config(num_layers=2), gqa_heads=2)
    data = recall_task(200, pairs=4, keys=8, values=8, seed=0)
    split = tuple(t[:100] for t in data), tuple(t[100:150] for t in data)
    test = tuple(t[150:] for t in data)
    state = torch.get_rng_state()
    result = train_kv_variants(variants, *split, test, learning_rates=(1e-3, 1e-2), steps=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert set(result.parameters) == set(variants) and len(set(result.parameters.values())) == 1
    assert result.cache_bytes_per_token["multi-head"] == 2 * 2 * 24 * 2
    assert result.cache_bytes_per_token["multi-query"] * 4 == 2 * 2 * 24 * 2
    for name in variants:
        assert result.learning_rate[name] == min(
            result.validation_loss[name], key=result.validation_loss[name].get
        )
        assert 0 <= result.test_accuracy[name] <= 1 and result.test_loss[name] > 0
        assert result.measured_cache_bytes[name] == 4 // 2 * result.cache_bytes_per_token[name] * 8
    assert "multi-query" in result.table()
    # The same seed gives the same result.
    again = train_kv_variants(variants, *split, test, learning_rates=(1e-3, 1e-2), steps=3)
    assert again.test_loss == result.test_loss


def test_kv_cache_curves_and_their_plot():
    import matplotlib.pyplot as plt

    from shared_lib.models import DECODER_PRESETS

    qwen = DECODER_PRESETS["qwen2.5-0.5b"]  # 14 query heads, 2 KV heads
    curves = kv_cache_curves(qwen, [1, 1024], gqa_heads=4)
    assert "grouped-query: 2 KV heads × 24 layers" in curves  # 4 does not divide 14
    assert curves["weights"][0] == curves["weights"][1] == weight_bytes(qwen)
    published = curves["as published: 2 KV heads × 24 layers"]
    assert published == [kv_cache_bytes(qwen, 1), kv_cache_bytes(qwen, 1024)]
    assert largest_divisor_at_most(14, 4) == 2
    figure = plot_kv_cache(curves, [1, 1024], "qwen")
    assert figure.axes[0].get_xlabel().startswith("context length")
    plt.close(figure)
    with pytest.raises(ValueError, match="weights"):
        plot_kv_cache({"a": [1, 2]}, [1, 2])
