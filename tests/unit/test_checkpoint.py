"""Tests of shared_lib.checkpoint: ties survive, values are exact, training resumes identically;
the version-2 layout (a plain weights file, the optimizer beside it), version-1 files, plain
safetensors files, DDP-prefixed names, ``dtype=`` casts and what a non-strict load skips.

Hugging Face files: test_checkpoint_hf.py; sharded (FSDP2) and DDP models on two processes:
test_checkpoint_distributed.py."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from shared_lib import load_checkpoint, save_checkpoint, shared_groups, tie
from shared_lib.checkpoint import LoadResult, optimizer_path

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
    assert metadata["shared_lib.format_version"] == "2" and metadata["format"] == "pt"
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
    with safe_open(tmp_path / "named.optimizer.safetensors", framework="pt") as handle:
        keys, record = set(handle.keys()), json.loads(handle.metadata()["shared_lib.optimizer"])
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert f"state.embed.weight.{key}" in keys
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
        ({}, torch.float32, ["embed.weight", "float64", "pass dtype=torch.float32"]),
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

    with pytest.raises(TypeError, match=r"dtype must be a torch\.dtype"):
        load_checkpoint(model, path, dtype="bfloat16")
    with pytest.raises(ValueError, match=r"dtype must be a floating-point dtype"):
        load_checkpoint(model, path, dtype=torch.int64)

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


# --------------------------------------------------------------------------- format version 2


def test_weights_file_is_a_plain_model_file_and_the_optimizer_is_beside_it(tmp_path):
    path = tmp_path / "lm.safetensors"
    model = build(0)
    optimizer = adam(model)
    train(model, optimizer, 1, seed=0)
    save_checkpoint(model, path, optimizer, metadata={"step": "1"})
    assert sorted(os.listdir(tmp_path)) == ["lm.optimizer.safetensors", "lm.safetensors"]
    assert optimizer_path(path) == str(tmp_path / "lm.optimizer.safetensors")
    with safe_open(path, framework="pt") as handle:
        keys, metadata = set(handle.keys()), handle.metadata()
    distinct = {id(t) for t in model.state_dict(keep_vars=True).values()}
    assert len(keys) == len(distinct) and not any("optimizer" in key for key in keys)
    assert metadata["format"] == "pt" and metadata["step"] == "1"
    assert metadata["shared_lib.optimizer_file"] == "lm.optimizer.safetensors"
    with safe_open(optimizer_path(path), framework="pt") as handle:
        extra = handle.metadata()
    assert extra["shared_lib.checkpoint_id"] == metadata["shared_lib.checkpoint_id"]
    assert extra["format"] == "pt" and extra["shared_lib.weights_file"] == "lm.safetensors"

    # safetensors' own loader reads it as it is, ties included (it skips the aliases).
    fresh = build(1)
    missing, unexpected = load_model(fresh, path)
    assert missing == set() and unexpected == []
    assert_same_state(model, fresh)


def test_optimizer_path_names_the_file_beside_the_weights():
    assert optimizer_path("runs/lm.safetensors") == "runs/lm.optimizer.safetensors"
    assert optimizer_path("runs/lm") == "runs/lm.optimizer.safetensors"
    with pytest.raises(TypeError, match="path must be"):
        optimizer_path(3)


def test_a_missing_or_stale_optimizer_file_is_refused(tmp_path):
    path = tmp_path / "lm.safetensors"
    model = build(0)
    optimizer = sgd(model)
    train(model, optimizer, 1, seed=0)
    save_checkpoint(model, path, optimizer)
    stale = (tmp_path / "lm.optimizer.safetensors").read_bytes()
    save_checkpoint(model, path, optimizer)  # a second save: new id in both files
    (tmp_path / "lm.optimizer.safetensors").write_bytes(stale)
    fresh = build(1)
    before = {name: tensor.clone() for name, tensor in fresh.state_dict().items()}
    with pytest.raises(ValueError, match="does not belong to checkpoint"):
        load_checkpoint(fresh, path, sgd(fresh))
    os.remove(tmp_path / "lm.optimizer.safetensors")
    with pytest.raises(FileNotFoundError, match=r"lm\.optimizer\.safetensors.* missing"):
        load_checkpoint(fresh, path, sgd(fresh))
    for name, tensor in fresh.state_dict().items():  # refused loads changed nothing
        assert torch.equal(tensor, before[name])
    load_checkpoint(fresh, path)  # the weights alone still load
    assert_same_state(model, fresh)


def test_a_renamed_pair_of_files_still_loads(tmp_path):
    model = build(0)
    optimizer = sgd(model)
    train(model, optimizer, 1, seed=0)
    save_checkpoint(model, tmp_path / "lm.safetensors", optimizer)
    os.rename(tmp_path / "lm.safetensors", tmp_path / "best.safetensors")
    os.rename(tmp_path / "lm.optimizer.safetensors", tmp_path / "best.optimizer.safetensors")
    fresh = build(1)
    resumed = sgd(fresh)
    load_checkpoint(fresh, tmp_path / "best.safetensors", resumed)
    assert_same_optimizer(optimizer, resumed)


def _as_version_1(path: os.PathLike, target: os.PathLike) -> None:
    """Rewrite a version-2 checkpoint as version 1 wrote it: the optimizer inside, no format."""
    tensors = load_file(path)
    with safe_open(path, framework="pt") as handle:
        metadata = dict(handle.metadata())
    for key in ("format", "shared_lib.checkpoint_id", "shared_lib.optimizer_file"):
        metadata.pop(key, None)
    metadata["shared_lib.format_version"] = "1"
    extra = optimizer_path(path)
    if os.path.exists(extra):
        tensors.update({f"__optimizer__.{k}": v for k, v in load_file(extra).items()})
        with safe_open(extra, framework="pt") as handle:
            metadata["shared_lib.optimizer"] = handle.metadata()["shared_lib.optimizer"]
    save_file(tensors, target, metadata=metadata)


def test_version_1_files_still_load_with_their_optimizer(tmp_path):
    model = build(0)
    optimizer = adam(model)
    train(model, optimizer, 2, seed=0)
    save_checkpoint(model, tmp_path / "v2.safetensors", optimizer, metadata={"step": "2"})
    _as_version_1(tmp_path / "v2.safetensors", tmp_path / "v1.safetensors")

    fresh = build(1, tied=False)
    assert load_checkpoint(fresh, tmp_path / "v1.safetensors") == {"step": "2"}
    resumed = adam(fresh)  # after the load re-tied the model
    load_checkpoint(fresh, tmp_path / "v1.safetensors", resumed)
    assert_same_state(model, fresh)
    assert shared_groups(fresh) == shared_groups(model)
    assert_same_optimizer(optimizer, resumed)

    _as_version_1(tmp_path / "v2.safetensors", tmp_path / "v9.safetensors")
    tensors = load_file(tmp_path / "v9.safetensors")
    with safe_open(tmp_path / "v9.safetensors", framework="pt") as handle:
        metadata = {**handle.metadata(), "shared_lib.format_version": "9"}
    save_file(tensors, tmp_path / "v9.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match="format version 9; this shared_lib reads versions 1, 2"):
        load_checkpoint(fresh, tmp_path / "v9.safetensors")


# --------------------------------------------------------------------------- what a load skips


def test_load_result_is_the_metadata_with_the_skipped_names(tmp_path):
    path = tmp_path / "extra.safetensors"
    source = build(0, extra=True)
    save_checkpoint(source, path, metadata={"step": "9"})
    strict = load_checkpoint(build(1, extra=True), path)
    assert isinstance(strict, LoadResult) and isinstance(strict, dict)
    assert strict == {"step": "9"} and str(strict) == "{'step': '9'}"
    assert strict.missing_keys == [] and strict.unexpected_keys == []

    smaller = load_checkpoint(build(2), path, strict=False)
    assert smaller == {"step": "9"}
    assert smaller.missing_keys == [] and smaller.unexpected_keys == ["extra.weight", "extra.bias"]

    path = tmp_path / "small.safetensors"
    save_checkpoint(build(3), path)
    larger = build(4, extra=True)
    result = load_checkpoint(larger, path, strict=False)
    assert result == {} and result.missing_keys == ["extra.weight", "extra.bias"]
    assert result.unexpected_keys == []
    assert torch.equal(larger.embed.weight, build(3).embed.weight)


# --------------------------------------------------------------------------- dtype


def test_dtype_casts_the_floating_point_tensors_on_load(tmp_path):
    path = tmp_path / "fp32.safetensors"
    source = build(0, torch.float32)
    save_checkpoint(source, path)
    half = build(1, torch.bfloat16)
    with pytest.raises(ValueError, match=r"pass dtype=torch\.bfloat16") as error:
        load_checkpoint(half, path)
    assert "embed.weight (file float32[13, 8], model bfloat16[13, 8])" in str(error.value)

    load_checkpoint(half, path, dtype=torch.bfloat16)
    for name, tensor in source.state_dict().items():
        loaded = half.state_dict()[name]
        if tensor.is_floating_point():
            assert loaded.dtype == torch.bfloat16 and torch.equal(loaded, tensor.bfloat16())
        else:  # the int64 buffer is never cast
            assert loaded.dtype == torch.int64 and torch.equal(loaded, tensor)
    assert shared_groups(half) == shared_groups(source)


def test_dtype_requires_the_model_in_that_dtype(tmp_path):
    path = tmp_path / "fp32.safetensors"
    save_checkpoint(build(0, torch.float32), path)
    single = build(1, torch.float32)
    with pytest.raises(ValueError, match=r"file float32 -> bfloat16\[13, 8\], model float32"):
        load_checkpoint(single, path, dtype=torch.bfloat16)
    load_checkpoint(single, path, dtype=torch.float32)  # casting to the file's own dtype: a no-op
    assert_same_state(build(0, torch.float32), single)


# --------------------------------------------------------------------------- plain files


def test_plain_safetensors_files_load_and_keep_the_model_ties(tmp_path):
    source = build(0)
    # save_model drops the aliases of a tied model and names them in the metadata
    save_model(source, tmp_path / "save_model.safetensors")
    tied = build(1)
    assert load_checkpoint(tied, tmp_path / "save_model.safetensors") == {}
    assert_same_state(source, tied)
    assert tensor_groups(tied) == tensor_groups(source)
    untied = build(2, tied=False)  # the ties save_model recorded are re-made
    load_checkpoint(untied, tmp_path / "save_model.safetensors")
    assert_same_state(source, untied)
    assert shared_groups(untied) == shared_groups(source)

    # save_file of a state dict with every tied name left out but the first: the model's ties fill
    # the others
    keep = {group[0] for group in tensor_groups(source)}
    dropped = {name for group in tensor_groups(source) for name in group} - keep
    state = {k: v.clone() for k, v in source.state_dict().items() if k not in dropped}
    save_file(state, tmp_path / "save_file.safetensors")
    tied = build(3)
    load_checkpoint(tied, tmp_path / "save_file.safetensors")
    assert_same_state(source, tied)
    assert tensor_groups(tied) == tensor_groups(source)


def test_a_plain_file_with_unknown_names_lists_them_and_how_many_matched(tmp_path):
    model = build(0)
    state = {k: v.clone() for k, v in build(1, tied=False).state_dict().items()}
    state["adapter.weight"] = torch.zeros(3, dtype=torch.float64)
    save_file(state, tmp_path / "adapter.safetensors")
    with pytest.raises(ValueError) as error:
        load_checkpoint(model, tmp_path / "adapter.safetensors")
    message = str(error.value)
    assert "not in the model: adapter.weight" in message
    assert f"{len(state) - 1} of the file's {len(state)} names are the model's" in message
    assert "strict=False" in message

    save_file({"weight": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match=r"0 of the file's 1 names are the model's"):
        load_checkpoint(model, tmp_path / "foreign.safetensors")
    result = load_checkpoint(build(2, tied=False), tmp_path / "adapter.safetensors", strict=False)
    assert result.unexpected_keys == ["adapter.weight"] and result.missing_keys == []


def test_a_missing_output_embedding_suggests_tying_it(tmp_path):
    torch.manual_seed(0)
    lm = nn.ModuleDict({"embed": nn.Embedding(10, 4), "head": nn.Linear(4, 10, bias=False)})
    save_file({"embed.weight": lm["embed"].weight.detach().clone()}, tmp_path / "hf.safetensors")
    with pytest.raises(ValueError) as error:
        load_checkpoint(lm, tmp_path / "hf.safetensors")
    message = str(error.value)
    assert "missing from the file: head.weight" in message
    assert "shared_lib.tie_embeddings(model)" in message and "strict=False" in message
    tie(lm["head"], lm["embed"])  # tied, the file is enough
    assert load_checkpoint(lm, tmp_path / "hf.safetensors").missing_keys == []


def test_two_tied_names_with_different_values_in_a_plain_file_are_refused(tmp_path):
    state = {k: v.clone() for k, v in build(0, tied=False).state_dict().items()}
    save_file(state, tmp_path / "untied.safetensors")
    tied = build(1)
    with pytest.raises(ValueError, match="different values"):
        load_checkpoint(tied, tmp_path / "untied.safetensors")


def test_ddp_prefixed_files_load_into_the_plain_model(tmp_path):
    source = build(0, tied=False)
    state = {f"module.{k}": v.clone() for k, v in source.state_dict().items()}
    save_file(state, tmp_path / "ddp.safetensors")  # torch.save(ddp.state_dict()), converted
    plain = build(1, tied=False)
    load_checkpoint(plain, tmp_path / "ddp.safetensors")
    assert_same_state(source, plain)

    # A model whose own names start with "module." (a submodule called so) keeps them.
    torch.manual_seed(0)
    wrapper = nn.ModuleDict({"module": nn.Linear(2, 2)})
    save_checkpoint(wrapper, tmp_path / "wrapper.safetensors")
    with safe_open(tmp_path / "wrapper.safetensors", framework="pt") as handle:
        assert sorted(handle.keys()) == ["module.bias", "module.weight"]
    other = nn.ModuleDict({"module": nn.Linear(2, 2)})
    load_checkpoint(other, tmp_path / "wrapper.safetensors")
    assert torch.equal(other["module"].weight, wrapper["module"].weight)
    deep = nn.Sequential(nn.ModuleDict({"module": nn.Linear(2, 2)}))
    save_checkpoint(deep, tmp_path / "deep.safetensors")
    with safe_open(tmp_path / "deep.safetensors", framework="pt") as handle:
        assert sorted(handle.keys()) == ["0.module.bias", "0.module.weight"]


def test_saving_to_a_folder_is_refused_with_a_file_name_to_use(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises(ValueError, match=r"path: .*run' is a folder.*run/model\.safetensors"):
        save_checkpoint(build(0), folder)
    with pytest.raises(ValueError, match="is a folder"):
        save_checkpoint(build(0), f"{tmp_path}/new/")
    assert os.listdir(folder) == []
    with pytest.raises(ValueError, match=r"metadata key 'format' is reserved"):
        save_checkpoint(build(0), folder / "model.safetensors", metadata={"format": "np"})


def test_a_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"folder without 'model\.safetensors'"):
        load_checkpoint(build(0), tmp_path)
    save_checkpoint(build(0), tmp_path / "model.safetensors")  # a save_pretrained-style folder
    fresh = build(1)
    load_checkpoint(fresh, tmp_path)
    assert_same_state(build(0), fresh)


def test_the_package_keeps_its_public_names():
    import shared_lib
    import shared_lib.checkpoint as checkpoint

    assert shared_lib.save_checkpoint is checkpoint.save_checkpoint is save_checkpoint
    assert shared_lib.load_checkpoint is checkpoint.load_checkpoint is load_checkpoint
    assert checkpoint.FORMAT_VERSION == checkpoint.format.FORMAT_VERSION == 2
    assert set(checkpoint.__all__) == {
        "FORMAT_VERSION",
        "LoadResult",
        "load_checkpoint",
        "optimizer_path",
        "save_checkpoint",
    }
