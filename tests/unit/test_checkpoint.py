"""Tests of shared_lib.checkpoint: ties survive, values are exact, training resumes identically."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from shared_lib import load_checkpoint, save_checkpoint, shared_groups, tie

VOCAB, DIM, BOTTLENECK = 13, 8, 4


class Shift(nn.Module):
    """Adds a fixed offset: a module with buffers (float and int64) to share."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("offset", torch.randn(dim))
        self.register_buffer("calls", torch.randint(0, 100, ()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.offset


class TinyLM(nn.Module):
    """Embedding tied to the output head, one block used twice, a transposed tied bottleneck.

    ``tied=False`` builds the same names and shapes with every tensor separate.
    """

    def __init__(
        self, tied: bool = True, vocab: int = VOCAB, dim: int = DIM, extra: bool = False
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        block, shift = nn.Linear(dim, dim), Shift(dim)
        if tied:
            self.blocks = nn.Sequential(block, shift, nn.Tanh(), block, shift)
        else:
            self.blocks = nn.Sequential(block, shift, nn.Tanh(), nn.Linear(dim, dim), Shift(dim))
        self.encoder = nn.Linear(dim, BOTTLENECK, bias=False)
        self.decoder = nn.Linear(BOTTLENECK, dim, bias=False)
        # Tied: decoder.weight is encoder.weight.T. Untied: the same layout over its own tensor.
        source = self.encoder if tied else nn.Linear(dim, BOTTLENECK, bias=False)
        tie(self.decoder, source, transpose=True)
        self.head = nn.Linear(dim, vocab, bias=False)
        if tied:
            tie(self.head, self.embed)
        if extra:
            self.extra = nn.Linear(dim, dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.embed(idx))
        x = x + self.decoder(torch.tanh(self.encoder(x)))
        return self.head(x)


def build(seed: int, dtype: torch.dtype = torch.float64, **kwargs) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(**kwargs).to(dtype)


def tensor_groups(model: nn.Module) -> list[list[str]]:
    """Names that are one tensor object, parameters and buffers alike."""
    groups: dict[int, list[str]] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert list(state_a) == list(state_b)
    for name in state_a:
        assert state_a[name].dtype == state_b[name].dtype, name
        assert torch.equal(state_a[name], state_b[name]), name


def assert_same_optimizer(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a["param_groups"] == state_b["param_groups"]
    assert state_a["state"].keys() == state_b["state"].keys()
    for index, entries in state_a["state"].items():
        assert entries.keys() == state_b["state"][index].keys()
        for key, value in entries.items():
            other = state_b["state"][index][key]
            if isinstance(value, torch.Tensor):
                assert value.dtype == other.dtype and torch.equal(value, other), (index, key)
            else:
                assert value == other, (index, key)


def train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, VOCAB, (4, 6), generator=generator)
        target = torch.randint(0, VOCAB, (4, 6), generator=generator)
        loss = F.cross_entropy(model(idx).flatten(0, 1), target.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def adam(model: nn.Module) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.Adam(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay}], lr=0.01, betas=(0.8, 0.9)
    )


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


# --------------------------------------------------------------------------- the pitfall


def test_safetensors_alone_refuses_or_mishandles_shared_tensors(tmp_path):
    """Upstream pitfall (safetensors #98, #202): a tied state dict cannot simply be saved."""
    model = build(0)
    state = model.state_dict()
    assert state["head.weight"].data_ptr() == state["embed.weight"].data_ptr()
    try:
        save_file(state, tmp_path / "naive.safetensors")
    except RuntimeError as error:
        assert "share memory" in str(error)
    else:  # a version that writes it: then the names come back as separate tensors
        with safe_open(tmp_path / "naive.safetensors", framework="pt") as handle:
            head, embed = handle.get_tensor("head.weight"), handle.get_tensor("embed.weight")
        assert head.data_ptr() != embed.data_ptr()


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_round_trip_is_exact_and_keeps_ties(tmp_path, dtype):
    model = build(0, dtype)
    groups = shared_groups(model)
    assert len(groups) == 4  # embed/head, block weight and bias, encoder/decoder
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path, metadata={"note": "round trip"})

    fresh = build(1, dtype)
    assert not torch.equal(fresh.embed.weight, model.embed.weight)
    assert load_checkpoint(fresh, path) == {"note": "round trip"}
    assert_same_state(model, fresh)
    assert shared_groups(fresh) == groups
    assert tensor_groups(fresh) == tensor_groups(model)
    idx = torch.arange(VOCAB).reshape(1, -1)
    assert torch.equal(fresh(idx), model(idx))


def test_ties_are_restored_into_a_model_built_without_them(tmp_path):
    model = build(0)
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path)

    untied = build(1, tied=False)
    assert shared_groups(untied) == [] and tensor_groups(untied) == []
    load_checkpoint(untied, path)
    assert shared_groups(untied) == shared_groups(model)
    assert tensor_groups(untied) == tensor_groups(model)  # buffers too
    assert untied.head.weight is untied.embed.weight
    assert untied.decoder.parametrizations.weight.original is untied.encoder.weight
    assert_same_state(model, untied)
    idx = torch.arange(VOCAB).reshape(1, -1)
    assert torch.equal(untied(idx), model(idx))


def test_file_stores_each_shared_tensor_once(tmp_path):
    tied_path, untied_path = tmp_path / "tied.safetensors", tmp_path / "untied.safetensors"
    tied, untied = build(0), build(0, tied=False)
    save_checkpoint(tied, tied_path)
    save_checkpoint(untied, untied_path)

    names = list(tied.state_dict())
    distinct = {id(t) for t in tied.state_dict(keep_vars=True).values()}
    with safe_open(tied_path, framework="pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    assert len(keys) == len(distinct) < len(names)
    ties = json.loads(metadata["shared_lib.ties"])
    assert sorted(map(sorted, ties)) == sorted(map(sorted, tensor_groups(tied)))
    assert all(group[0] in keys and not set(group[1:]) & keys for group in ties)
    assert set(json.loads(metadata["shared_lib.signature"])) == set(names)
    assert metadata["shared_lib.format_version"] == "1"
    with safe_open(untied_path, framework="pt") as handle:
        assert len(list(handle.keys())) == len(names)
    assert os.path.getsize(tied_path) < os.path.getsize(untied_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile imports torch.jit
def test_compiled_and_plain_models_read_each_other(tmp_path):
    plain = build(0)
    compiled = torch.compile(build(1))  # compilation is lazy: nothing is traced here
    assert all(name.startswith("_orig_mod.") for name in compiled.state_dict())

    path = tmp_path / "compiled.safetensors"
    optimizer = sgd(compiled)
    train(compiled._orig_mod, optimizer, 2, seed=0)
    save_checkpoint(compiled, path, optimizer)
    with safe_open(path, framework="pt") as handle:
        stored = list(handle.keys())
    assert not any("_orig_mod" in key for key in stored)
    fresh_optimizer = sgd(plain)
    load_checkpoint(plain, path, fresh_optimizer)
    assert_same_state(compiled._orig_mod, plain)
    assert_same_optimizer(optimizer, fresh_optimizer)

    path = tmp_path / "plain.safetensors"
    source = build(2)
    save_checkpoint(source, path)
    target = torch.compile(build(3, tied=False))
    load_checkpoint(target, path)
    assert_same_state(source, target._orig_mod)
    assert shared_groups(target._orig_mod) == shared_groups(source)


# --------------------------------------------------------------------------- resuming


@pytest.mark.parametrize("make_optimizer", [adam, sgd], ids=["adam", "sgd-momentum"])
def test_resumed_training_is_bit_identical(tmp_path, make_optimizer):
    path = tmp_path / "resume.safetensors"
    model_a = build(0)
    optimizer_a = make_optimizer(model_a)
    train(model_a, optimizer_a, 3, seed=10)
    save_checkpoint(model_a, path, optimizer_a)
    train(model_a, optimizer_a, 3, seed=11)

    model_b = build(1)
    optimizer_b = make_optimizer(model_b)
    load_checkpoint(model_b, path, optimizer_b)
    train(model_b, optimizer_b, 3, seed=11)

    assert_same_state(model_a, model_b)
    assert_same_optimizer(optimizer_a, optimizer_b)
    if make_optimizer is adam:
        step = optimizer_b.state[model_b.embed.weight]["step"]
        assert isinstance(step, torch.Tensor) and step.item() == 6


def test_optimizer_state_is_keyed_by_parameter_name(tmp_path):
    path = tmp_path / "named.safetensors"
    model = build(0)
    optimizer = adam(model)
    train(model, optimizer, 1, seed=0)
    save_checkpoint(model, path, optimizer)
    with safe_open(path, framework="pt") as handle:
        keys, record = set(handle.keys()), json.loads(handle.metadata()["shared_lib.optimizer"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert f"__optimizer__.state.embed.weight.{key}" in keys
    assert not any(".head.weight." in key for key in keys)  # a tied parameter appears once
    assert record["param_groups"][0]["betas"] == [0.8, 0.9]
    assert "embed.weight" in record["param_groups"][0]["params"]


def test_optimizer_restored_into_untied_model_built_after_loading(tmp_path):
    path = tmp_path / "resume.safetensors"
    model = build(0)
    optimizer = adam(model)
    train(model, optimizer, 2, seed=0)
    save_checkpoint(model, path, optimizer)

    untied = build(1, tied=False)
    with pytest.raises(ValueError, match="not a parameter of model after loading"):
        load_checkpoint(untied, path, adam(untied))
    load_checkpoint(untied, path)
    resumed = adam(untied)
    load_checkpoint(untied, path, resumed)
    train(model, optimizer, 2, seed=1)
    train(untied, resumed, 2, seed=1)
    assert_same_state(model, untied)
    assert_same_optimizer(optimizer, resumed)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("kwargs", "dtype", "names"),
    [
        ({"extra": True}, torch.float64, ["extra.weight", "extra.bias"]),
        ({"vocab": VOCAB + 1}, torch.float64, ["embed.weight", "head.weight"]),
        ({}, torch.float32, ["embed.weight", "float64"]),
    ],
    ids=["extra-layer", "shape", "dtype"],
)
def test_mismatched_architecture_is_refused(tmp_path, kwargs, dtype, names):
    path = tmp_path / "model.safetensors"
    save_checkpoint(build(0), path)
    other = build(1, dtype, **kwargs)
    before = {name: tensor.clone() for name, tensor in other.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit") as error:
        load_checkpoint(other, path)
    for name in names:
        assert name in str(error.value)
    for name, tensor in other.state_dict().items():  # a refused load changes nothing
        assert torch.equal(tensor, before[name])


def test_missing_names_are_refused_unless_not_strict(tmp_path):
    path = tmp_path / "extra.safetensors"
    source = build(0, extra=True)
    save_checkpoint(source, path)
    target = build(1)
    with pytest.raises(ValueError, match=r"not in the model: extra\.weight"):
        load_checkpoint(target, path)
    load_checkpoint(target, path, strict=False)
    assert torch.equal(target.embed.weight, source.embed.weight)


def test_untied_file_into_tied_model_with_different_values_is_refused(tmp_path):
    path = tmp_path / "untied.safetensors"
    save_checkpoint(build(0, tied=False), path)
    tied = build(1)
    before = tied.embed.weight.detach().clone()
    with pytest.raises(ValueError, match="different values") as error:
        load_checkpoint(tied, path)
    assert "embed.weight" in str(error.value) and "head.weight" in str(error.value)
    assert torch.equal(tied.embed.weight, before)


def test_untied_file_with_equal_values_loads_into_tied_model(tmp_path):
    path = tmp_path / "untied-equal.safetensors"
    source = build(0)
    untied = build(1, tied=False)
    load_checkpoint(untied, _saved(source, tmp_path / "tied.safetensors"))
    with torch.no_grad():  # untie by hand: separate tensors holding equal values
        untied.head.weight = nn.Parameter(untied.embed.weight.clone())
        untied.blocks[3].weight = nn.Parameter(untied.blocks[0].weight.clone())
        untied.blocks[3].bias = nn.Parameter(untied.blocks[0].bias.clone())
    save_checkpoint(untied, path)
    tied = build(2)
    load_checkpoint(tied, path)
    assert_same_state(source, tied)
    assert tied.head.weight is tied.embed.weight


def _saved(model: nn.Module, path: os.PathLike) -> os.PathLike:
    save_checkpoint(model, path)
    return path


def test_optimizer_holding_a_parameter_twice_is_refused(tmp_path):
    model = build(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch itself only warns (pytorch #40967)
        twice = torch.optim.SGD([model.embed.weight, model.head.weight], lr=0.1)
    with pytest.raises(ValueError, match="twice"):
        save_checkpoint(model, tmp_path / "twice.safetensors", twice)
    path = tmp_path / "ok.safetensors"
    save_checkpoint(model, path, torch.optim.SGD([model.embed.weight], lr=0.1))
    with pytest.raises(ValueError, match="twice"):
        load_checkpoint(model, path, twice)


def test_optimizer_that_does_not_correspond_is_refused(tmp_path):
    path = tmp_path / "adam.safetensors"
    model = build(0)
    optimizer = adam(model)
    train(model, optimizer, 1, seed=0)
    save_checkpoint(model, path, optimizer)
    fresh = build(1)
    with pytest.raises(
        ValueError, match=r"optimizer has 1 parameter group\(s\), checkpoint .* has 2"
    ):
        load_checkpoint(fresh, path, torch.optim.Adam(fresh.parameters()))
    params = list(fresh.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    subset = torch.optim.Adam([{"params": decay[1:]}, {"params": no_decay}])
    with pytest.raises(ValueError, match=r"saved but not held: .*embed\.weight"):
        load_checkpoint(fresh, path, subset)
    with pytest.raises(ValueError, match=r"optimizer is a torch\.optim\.sgd\.SGD"):
        load_checkpoint(fresh, path, torch.optim.SGD([{"params": decay}, {"params": no_decay}]))
    with pytest.raises(ValueError, match="holds no optimizer state"):
        load_checkpoint(fresh, _saved(model, tmp_path / "plain.safetensors"), adam(fresh))
    stranger = nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="not a parameter of model"):
        save_checkpoint(model, path, torch.optim.SGD([stranger], lr=0.1))


def test_bad_input_is_refused_with_the_argument_named(tmp_path):
    model = build(0)
    path = tmp_path / "model.safetensors"
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        save_checkpoint({"weight": torch.zeros(1)}, path)
    with pytest.raises(TypeError, match="optimizer must be"):
        save_checkpoint(model, path, optimizer="adam")
    with pytest.raises(TypeError, match="path must be"):
        save_checkpoint(model, 3)
    with pytest.raises(TypeError, match="metadata must"):
        save_checkpoint(model, path, metadata={"epoch": 3})
    with pytest.raises(ValueError, match=r"metadata key 'shared_lib\.ties'"):
        save_checkpoint(model, path, metadata={"shared_lib.ties": "[]"})
    with pytest.raises(TypeError, match="model must be"):
        load_checkpoint(None, path)
    with pytest.raises(TypeError, match="optimizer must be"):
        load_checkpoint(model, path, optimizer=object())
    with pytest.raises(TypeError, match="strict must be True or False"):
        load_checkpoint(model, path, strict="no")

    missing = tmp_path / "nowhere" / "missing.safetensors"
    with pytest.raises(FileNotFoundError, match="path") as error:
        load_checkpoint(model, missing)
    assert str(missing) in str(error.value)

    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(ValueError, match=r"path: .* not a shared_lib checkpoint"):
        load_checkpoint(model, foreign)
    text = tmp_path / "notes.safetensors"
    text.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"path: .* not a safetensors file"):
        load_checkpoint(model, text)


def test_write_is_atomic_and_creates_folders(tmp_path):
    path = tmp_path / "runs" / "seed0" / "last.safetensors"
    model = build(0)
    save_checkpoint(model, str(path))
    save_checkpoint(build(1), path)  # replaces the file
    assert os.listdir(path.parent) == ["last.safetensors"]  # no temporary file left behind
    with pytest.raises(ValueError, match="twice"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            twice = torch.optim.SGD([model.embed.weight, model.embed.weight], lr=0.1)
        save_checkpoint(model, path, twice)
    assert os.listdir(path.parent) == ["last.safetensors"]
    fresh = build(2)
    load_checkpoint(fresh, path)
    assert_same_state(build(1), fresh)


def test_the_package_keeps_its_public_names():
    import shared_lib
    import shared_lib.checkpoint as checkpoint

    assert shared_lib.save_checkpoint is checkpoint.save_checkpoint is save_checkpoint
    assert shared_lib.load_checkpoint is checkpoint.load_checkpoint is load_checkpoint
    assert checkpoint.FORMAT_VERSION == checkpoint.format.FORMAT_VERSION == 1
    assert set(checkpoint.__all__) == {"FORMAT_VERSION", "load_checkpoint", "save_checkpoint"}
