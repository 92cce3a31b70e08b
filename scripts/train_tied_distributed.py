"""Train models with shared weights on several processes and check them against one process.

Run by the appendix "Sharing at scale" and by tests/unit/test_distributed.py::

    torchrun --standalone --nproc_per_node=2 scripts/train_tied_distributed.py --out DIR

Two tiny models with shared weights are trained for a few steps, each under DDP
(``shared_lib.distributed.wrap_ddp``) and under FSDP2 (``shared_lib.distributed.shard_model``):

* ``gpt``: a GPT-2 style decoder whose output layer is the token embedding (a tie);
* ``albert``: an ALBERT-style encoder (one layer object at every depth) with a masked-LM head
  whose decoder is the word embedding (ALBERT ties it too).

Every process also trains the same model alone on the whole global batch. The script checks, on
every rank, that the first step's gradients, the losses and the final weights equal that
single-process run (float64, so only the order of summation differs), that the replicas agree,
and that every tie still holds. It then saves the sharded FSDP model and its optimizer directly
with ``shared_lib.save_checkpoint`` (every rank calls it: gathering the shards is collective;
rank 0 writes), loads the checkpoint back into a freshly built and sharded model with a fresh
optimizer (exact, ties kept), and into a fresh single-process model, which must hold the
single-process weights.

Then what goes wrong without ``shared_lib.distributed``: FSDP2 told to shard GPT's tied output
layer apart from its embedding; and reentrant activation checkpointing of shared weights, which
DDP does not support: the shared ALBERT layer checkpointed at every depth, and a recurrent LM's
LSTM and tied output layer checkpointed while the embedding is used outside the regions. The
script records what plain DDP does with each, checks that ``wrap_ddp`` refuses both, and that
both fixes it names train correctly.

Two more runs look at sharing beyond data parallelism:

* ``pipeline`` (two processes): the tied GPT cut into two pipeline stages, rank 0 holding the
  embeddings and the first half of the blocks, rank 1 the rest and the output layer, each with
  its own copy of the tied matrix. Activations go forward and their gradients back with
  ``dist.send``/``dist.recv`` in two micro-batches; then the copies' gradients are summed over
  the "embedding group" (``shared_lib.distributed.all_reduce_tied_grads``, as Megatron-LM does)
  and each stage steps. Checked against one process, and run again without the all-reduce, where
  the copies drift apart.
* ``reshard``: the ALBERT-style encoder under FSDP2 with ``reshard_after_forward`` True and
  False; every collective of a training step counted (by kind, unit and phase, with its bytes)
  at the dispatcher, and the parameter bytes each process holds unsharded.

Rank 0 writes ``DIR/results.json`` and the checkpoints ``DIR/<model>.safetensors`` (with the
optimizer state in ``DIR/<model>.optimizer.safetensors``). On a machine
with a GPU for every process the same command uses NCCL and one GPU per process; elsewhere gloo
on the CPU (``--device cpu`` or ``cuda`` forces one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from shared_lib.checkpoint import load_checkpoint, optimizer_path, save_checkpoint
from shared_lib.distributed import (
    Checkpointed,
    all_reduce_tied_grads,
    fsdp_units,
    shard_model,
    wrap_ddp,
)
from shared_lib.models import GPT, GPTConfig, TransformerConfig, TransformerEncoder
from shared_lib.tying import check_ties, shared_groups

DTYPE = torch.float64  # exact enough that only the order of summation differs
TOLERANCE = 1e-9  # max |distributed - single process|, far above float64 rounding (~1e-16)
VOCAB, LENGTH, PER_RANK_BATCH, STEPS, LR = 64, 8, 2, 3, 1e-2


class MaskedLM(nn.Module):
    """ALBERT-style encoder with a masked-LM head whose decoder is the word embedding."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(config)
        width = config.embedding_width
        self.transform = nn.Sequential(
            nn.Linear(config.hidden_size, width), nn.GELU(), nn.LayerNorm(width)
        )
        self.decoder = nn.Linear(width, config.vocab_size)
        self.decoder.weight = self.encoder.word_embeddings.weight  # the tie (ALBERT, BERT)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encoder(input_ids)
        logits = self.decoder(self.transform(hidden))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class CausalLM(nn.Module):
    """GPT with the loss as its output, so that every wrapper sees the same call."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gpt = GPT(config)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.gpt(input_ids, targets)[1]


class RecurrentLM(nn.Module):
    """Embedding, LSTM, and an output layer whose weight is the embedding (Press & Wolf, 2017)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.output = nn.Linear(width, VOCAB)
        self.output.weight = self.embedding.weight  # the tie

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.lstm(self.embedding(input_ids))[0]
        logits = self.output(hidden)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def build(kind: str, checkpointing: bool | None = None, seed: int = 0) -> nn.Module:
    """The tiny model ``kind`` (``"gpt"``, ``"albert"`` or ``"rnn"``), seeded, in float64.

    ``checkpointing`` (``None``: none) wraps in ``Checkpointed(..., use_reentrant=checkpointing)``
    every ALBERT layer (one shared layer object, so the region sits at every depth), or the
    recurrent LM's LSTM and output layer (the output layer's weight is the embedding, which is
    used outside the regions). Checkpointing an output layer saves its large
    (batch, length, vocabulary) activation.
    """
    torch.manual_seed(seed)
    if kind == "gpt":
        model = CausalLM(
            GPTConfig(vocab_size=VOCAB, block_size=LENGTH, n_layer=2, n_head=2, n_embd=32)
        )
    elif kind == "albert":
        config = TransformerConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_layers=4,
            num_heads=2,
            intermediate_size=64,
            embedding_size=16,
            max_position=LENGTH,
            share="all",
            pooler=False,
        )
        model = MaskedLM(config)
        if checkpointing is not None:
            wrapped = Checkpointed(model.encoder.layers[0], use_reentrant=checkpointing)
            model.encoder.layers = nn.ModuleList([wrapped] * config.num_layers)
    elif kind == "rnn":
        model = RecurrentLM()
        if checkpointing is not None:
            model.lstm = Checkpointed(model.lstm, use_reentrant=checkpointing)
            model.output = Checkpointed(model.output, use_reentrant=checkpointing)
    else:
        raise ValueError(f"kind must be 'gpt', 'albert' or 'rnn', got {kind!r}")
    return model.to(DTYPE)


def candidates(kind: str, model: nn.Module) -> list[nn.Module]:
    """The units we would like FSDP to use: every block, the embedding and the output layer."""
    if kind == "gpt":
        gpt = model.gpt
        return [*gpt.transformer.h, gpt.transformer.wte, gpt.lm_head]
    return [*model.encoder.layers, model.encoder.word_embeddings, model.decoder]


def global_batch(kind: str, world_size: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One global batch (inputs, targets): next tokens for the LMs, masked tokens for ALBERT."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (PER_RANK_BATCH * world_size, LENGTH + 1), generator=generator)
    if kind in ("gpt", "rnn"):
        return tokens[:, :-1], tokens[:, 1:]
    tokens = tokens[:, :-1]
    masked = torch.rand(tokens.shape, generator=generator) < 0.25
    return tokens.masked_fill(masked, 0), tokens  # id 0 is [MASK]; every position is scored


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A plain tensor on the CPU (gathering a sharded DTensor from every rank)."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().cpu()


def adamw(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state by parameter name and key, whole tensors on the CPU."""
    return {
        f"{name}.{key}": full(value)
        for name, param in model.named_parameters()
        for key, value in optimizer.state[param].items()
    }


def train(model: nn.Module, inputs, targets, device, distributed: bool = False) -> dict:
    """``STEPS`` AdamW steps; the first step's gradients, the final weights, the global losses
    (and, under ``"optimizer"``, the optimizer).

    In a distributed run a ``RuntimeError`` ends training early: the result then says at which
    step (counting from 1) and keeps the gradients of the first step if it got that far.
    """
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    optimizer = adamw(model)
    inputs, targets = inputs.to(device), targets.to(device)
    result: dict = {"grads": {}, "losses": [], "optimizer": optimizer}
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        try:
            loss = model(inputs, targets)
            loss.backward()
        except RuntimeError as error:  # every rank fails at the same point: none is left waiting
            if not distributed:
                raise
            return {**result, "error": str(error).split(". ")[0], "failed_at_step": step + 1}
        if step == 0:
            result["grads"] = {name: full(p.grad) for name, p in inner.named_parameters()}
        optimizer.step()
        loss = loss.detach()
        if distributed:  # the loss of the global batch: the mean of the ranks' equal shares
            dist.all_reduce(loss)
            loss /= dist.get_world_size()
        result["losses"].append(float(loss))
    result["weights"] = {name: full(p) for name, p in inner.named_parameters()}
    return result


def max_difference(a: dict, b: dict) -> float:
    if a.keys() != b.keys():
        raise AssertionError(f"different parameter names: {sorted(a.keys() ^ b.keys())}")
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def compare(run: dict, reference: dict) -> dict:
    return {
        "grad_max_abs_diff": max_difference(run["grads"], reference["grads"]),
        "weight_max_abs_diff": max_difference(run["weights"], reference["weights"]),
        "loss_max_abs_diff": max(
            abs(x - y) for x, y in zip(run["losses"], reference["losses"], strict=True)
        ),
        "losses": run["losses"],
    }


def all_ranks_values(value: object) -> list:
    """``value`` from every rank, in rank order."""
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def all_ranks(flag: bool) -> list[bool]:
    """``flag`` from every rank, in rank order."""
    return all_ranks_values(bool(flag))


def replica_spread(weights: dict, device: torch.device) -> float:
    """Largest difference between any rank's weights and rank 0's (0: the replicas agree)."""
    flat = torch.cat([w.flatten() for w in weights.values()]).to(device)
    first = flat.clone()
    dist.broadcast(first, src=0)
    spreads: list = [None] * dist.get_world_size()
    dist.all_gather_object(spreads, float((flat - first).abs().max()))
    return max(spreads)


def ties_hold(model: nn.Module, groups: list[list[str]]) -> bool:
    try:
        check_ties(model, groups)
    except RuntimeError:
        return False
    return bool(groups)  # every model here has ties: an empty list would mean they vanished


def run_ddp(
    kind: str, device, rank: int, world: int, checkpointing=None, checked=True, **ddp_kwargs
) -> dict:
    """DDP against one process; ``checked=False`` skips ``wrap_ddp``'s check (plain DDP)."""
    inputs, targets = global_batch(kind, world)
    reference = train(build(kind, checkpointing).to(device), inputs, targets, device)
    model = build(kind, checkpointing).to(device)
    groups = shared_groups(model)
    if device.type == "cuda":
        ddp_kwargs["device_ids"] = [device.index]
    if checked:
        ddp = wrap_ddp(model, **ddp_kwargs)
    else:
        ddp = nn.parallel.DistributedDataParallel(model, **ddp_kwargs)
    rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
    run = train(ddp, inputs[rows], targets[rows], device, distributed=True)
    if "error" in run:
        failed = {key: run[key] for key in ("error", "failed_at_step")}
        if run["grads"]:  # what the steps before the error computed, silently
            failed["grad_max_abs_diff"] = max_difference(run["grads"], reference["grads"])
        return failed
    result = compare(run, reference)
    result["replica_spread"] = replica_spread(run["weights"], device)
    result["ties_hold_on_ranks"] = all_ranks(ties_hold(model, groups))
    if not checked:
        result["first_grads"] = run["grads"]  # for run_reentrant; not written to the JSON
    return result


def partial_average(device, rank: int, world: int) -> torch.Tensor:
    """The recurrent LM's embedding gradient if only the output layer's share were averaged.

    The tied weight gets two shares of gradient: through the output layer and through the
    embedding lookup. This is their sum with the first averaged over the processes and the
    second left as this process computed it.
    """
    inputs, targets = global_batch("rnn", world)
    rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
    model = build("rnn").to(device)
    as_input, as_output = (model.embedding.weight.detach().clone().requires_grad_() for _ in "ab")
    hidden = model.lstm(F.embedding(inputs[rows].to(device), as_input))[0]
    logits = F.linear(hidden, as_output, model.output.bias)
    loss = F.cross_entropy(logits.reshape(-1, VOCAB), targets[rows].reshape(-1).to(device))
    input_share, output_share = torch.autograd.grad(loss, [as_input, as_output])
    dist.all_reduce(output_share)
    return (output_share / world + input_share).cpu()


def run_fsdp(kind: str, device, rank: int, world: int, out: Path) -> dict:
    inputs, targets = global_batch(kind, world)
    reference = train(build(kind).to(device), inputs, targets, device)
    model = build(kind).to(device)
    groups = shared_groups(model)
    units = fsdp_units(model, candidates(kind, model))
    names = {id(m): name for name, m in model.named_modules()}
    shard_model(model, candidates(kind, model))
    sharded = ties_hold(model, groups)
    rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
    run = train(model, inputs[rows], targets[rows], device, distributed=True)
    result = compare(run, reference)
    result["replica_spread"] = replica_spread(run["weights"], device)
    result["units"] = [[names[id(m)] for m in unit] for unit in units]
    result["ties_hold_on_ranks"] = all_ranks(sharded and ties_hold(model, groups))

    # The sharded model and its optimizer -> a tie-preserving checkpoint. Every rank calls
    # save_checkpoint (it gathers the shards, a collective); rank 0 writes the files.
    path = out / f"{kind}.safetensors"
    save_checkpoint(model, path, run["optimizer"])
    # Back into a freshly built, sharded model with a fresh optimizer: every rank reads the
    # file and keeps its own shards.
    reloaded = build(kind, seed=1).to(device)
    shard_model(reloaded, candidates(kind, reloaded))
    reloaded_optimizer = adamw(reloaded)
    load_checkpoint(reloaded, path, reloaded_optimizer)
    sharded_back = {name: full(p) for name, p in reloaded.named_parameters()}
    moments = optimizer_state(reloaded, reloaded_optimizer)
    # And into an ordinary single-process model.
    fresh = build(kind, seed=2).to(device)
    load_checkpoint(fresh, path)
    loaded = {name: full(p) for name, p in fresh.named_parameters()}
    result["checkpoint"] = {
        "path": path.name,
        "optimizer_path": Path(optimizer_path(path)).name,
        "ties_hold": all(all_ranks(ties_hold(reloaded, groups) and ties_hold(fresh, groups))),
        "sharded_reload_max_abs_diff": max_difference(sharded_back, run["weights"]),
        "optimizer_reload_max_abs_diff": max_difference(
            moments, optimizer_state(model, run["optimizer"])
        ),
        "weight_max_abs_diff": max_difference(loaded, reference["weights"]),
    }
    return result


def run_fsdp_split(device, rank: int, world: int) -> dict:
    """FSDP2 alone, told to shard GPT's output layer apart from the embedding it is tied to."""
    from torch.distributed.fsdp import fully_shard

    inputs, targets = global_batch("gpt", world)
    model = build("gpt").to(device)
    fully_shard(model.gpt.lm_head)  # what check_units refuses: the tie split over two units
    fully_shard(model)
    result = {"tie_after_fully_shard": model.gpt.lm_head.weight is model.gpt.transformer.wte.weight}
    rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
    try:
        model(inputs[rows].to(device), targets[rows].to(device)).backward()
    except (RuntimeError, ValueError) as error:  # raised on every rank, before any collective
        result["error"] = f"{type(error).__name__}: {str(error).split('. ')[0]}"
    else:
        result["error"] = None
    return result


def run_reentrant(device, rank: int, world: int) -> dict:
    """Shared weights under reentrant checkpointing: plain DDP, wrap_ddp, and both fixes."""
    result: dict = {}
    for kind in ("albert", "rnn"):
        try:
            wrap_ddp(build(kind, checkpointing=True).to(device))
        except ValueError as error:
            refused = str(error)
        else:
            refused = None
        plain = run_ddp(kind, device, rank, world, True, checked=False)
        grads = plain.pop("first_grads", None)
        if kind == "rnn" and grads is not None:  # does a partial average explain the result?
            predicted = partial_average(device, rank, world)
            gap = float((grads["embedding.weight"] - predicted).abs().max())
            plain["partial_average_gap_on_ranks"] = all_ranks_values(gap)
        result[kind] = {
            "wrap_ddp_error": refused,
            "plain_ddp": plain,
            "fix_use_reentrant_false": run_ddp(kind, device, rank, world, False),
            "fix_static_graph": run_ddp(kind, device, rank, world, True, static_graph=True),
        }
    return result


# ---------------------------------------------------------------- tied embeddings in a pipeline

TIED = "gpt.transformer.wte.weight"  # the tied matrix's name (lm_head.weight is the same tensor)
MICRO_BATCHES = 2  # the global batch goes through the pipeline in two micro-batches


def stage_modules(model: CausalLM, stage: int) -> list[nn.Module]:
    """Pipeline stage 0 (the embeddings, the first half of the blocks) or 1 (the second half,
    the final norm, the output layer) of the tied GPT. Both use the tied matrix."""
    t = model.gpt.transformer
    half = len(t.h) // 2
    return [t.wte, t.wpe, *t.h[:half]] if stage == 0 else [*t.h[half:], t.ln_f, model.gpt.lm_head]


def stage_parameters(model: CausalLM, stage: int) -> dict[str, nn.Parameter]:
    """A stage's parameters by their names in the whole model (the copy is named ``TIED``)."""
    ids = {id(p) for module in stage_modules(model, stage) for p in module.parameters()}
    return {name: p for name, p in model.named_parameters() if id(p) in ids}


def stage_forward(model: CausalLM, stage: int, x: torch.Tensor) -> torch.Tensor:
    """GPT's forward pass cut in two: token ids -> hidden states (stage 0), hidden -> logits (1)."""
    t = model.gpt.transformer
    half = len(t.h) // 2
    if stage == 0:
        x = t.drop(t.wte(x) + t.wpe(torch.arange(x.shape[1], device=x.device)))
    for block in t.h[:half] if stage == 0 else t.h[half:]:
        x = block(x)
    return x if stage == 0 else model.gpt.lm_head(t.ln_f(x))


def spread_of_copies(copy: torch.Tensor, stage: int, group) -> float:
    """Largest difference between the last stage's copy of the tied matrix and the first's."""
    first = copy.detach().clone()
    dist.broadcast(first, src=0, group=group)
    return max(all_ranks_values(float((copy.detach() - first).abs().max()) if stage == 1 else 0.0))


def run_pipeline_once(device, rank: int, reference: dict, group, all_reduce: bool) -> dict:
    """Two pipeline stages train the tied GPT; with or without the embedding-group all-reduce.

    Rank 0 is the first stage, rank 1 the last; each holds its own copy of the tied matrix.
    Activations go forward and their gradients back with ``dist.send``/``dist.recv``, one
    micro-batch after the other (gradients accumulate); then, if ``all_reduce``, the copies'
    gradients are summed over the embedding group; then each stage takes its AdamW step.
    """
    stage = rank
    inputs, targets = global_batch("gpt", 2)
    model = build("gpt").to(device)
    params = stage_parameters(model, stage)
    copy = params[TIED]
    # Megatron-LM's start: the last stage zeroes its copy, and an all-reduce (sum) over the
    # embedding group gives it the first stage's values.
    if stage == 1:
        copy.detach().zero_()
    dist.all_reduce(copy.detach(), group=group)
    optimizer = torch.optim.AdamW(params.values(), lr=LR, weight_decay=0.01)
    width = model.gpt.config.n_embd
    chunks = (inputs.to(device).chunk(MICRO_BATCHES), targets.to(device).chunk(MICRO_BATCHES))
    micro = list(zip(*chunks, strict=True))
    result: dict = {"losses": [], "copy_spread_after_step": []}
    result["copy_spread_at_start"] = spread_of_copies(copy, stage, group)
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), dtype=DTYPE, device=device)
        for x, y in micro:
            shape = (x.shape[0], x.shape[1], width)
            if stage == 0:  # forward, send the activations on, wait for their gradient
                hidden = stage_forward(model, 0, x)
                dist.send(hidden.detach(), dst=1)
                grad = torch.empty(shape, dtype=DTYPE, device=device)
                dist.recv(grad, src=1)
                hidden.backward(grad)
            else:  # receive the activations, finish forward and backward, send their gradient
                hidden = torch.empty(shape, dtype=DTYPE, device=device)
                dist.recv(hidden, src=0)
                hidden.requires_grad_()
                logits = stage_forward(model, 1, hidden)
                share = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1)) / MICRO_BATCHES
                share.backward()
                dist.send(hidden.grad, dst=0)
                loss += share.detach()
        if step == 0:  # this stage's share of the tied matrix's gradient, alone
            result["share_max_abs_diff"] = float((copy.grad - reference["grads"][TIED]).abs().max())
        if all_reduce:
            all_reduce_tied_grads([copy], group=group)  # the embedding group: sum the shares
        if step == 0:
            result["grads"] = {name: p.grad.detach().clone() for name, p in params.items()}
        optimizer.step()
        dist.broadcast(loss, src=1)  # the last stage computed the loss
        result["losses"].append(float(loss))
        result["copy_spread_after_step"].append(spread_of_copies(copy, stage, group))
    result["weights"] = {name: p.detach().clone() for name, p in params.items()}
    return result


def run_pipeline(device, rank: int, world: int) -> dict:
    """The tied GPT in a two-stage pipeline, with and without the all-reduce, vs one process."""
    if world != 2:
        return {"skipped": f"the pipeline run needs 2 processes, got {world}"}
    inputs, targets = global_batch("gpt", 2)
    reference = train(build("gpt").to(device), inputs, targets, device)
    reference["grads"] = {k: v.to(device) for k, v in reference["grads"].items()}
    reference["weights"] = {k: v.to(device) for k, v in reference["weights"].items()}
    group = dist.new_group([0, 1])  # the embedding group: the first and the last stage
    model = build("gpt")
    names = {id(module): name for name, module in model.gpt.named_modules()}
    result: dict = {
        "micro_batches": MICRO_BATCHES,
        "stages": [[names[id(m)] for m in stage_modules(model, stage)] for stage in (0, 1)],
        "tied_shape": list(model.gpt.transformer.wte.weight.shape),
    }
    for name, all_reduce in (("with_all_reduce", True), ("without_all_reduce", False)):
        run = run_pipeline_once(device, rank, reference, group, all_reduce)
        names = all_ranks_values(sorted(run["grads"]))
        summary = {
            "copy_spread_at_start": run["copy_spread_at_start"],
            "copy_spread_after_step": run["copy_spread_after_step"],
            "loss_max_abs_diff": max(
                abs(x - y) for x, y in zip(run["losses"], reference["losses"], strict=True)
            ),
            "losses": run["losses"],
            "share_max_abs_diff_on_ranks": all_ranks_values(run["share_max_abs_diff"]),
            "covers_every_parameter": sorted(set(names[0]) | set(names[1]))
            == sorted(reference["grads"]),
        }
        for key in ("grads", "weights"):
            here = run[key]
            summary[f"{key[:-1]}_max_abs_diff"] = max(
                all_ranks_values(max_difference(here, {n: reference[key][n] for n in here}))
            )
            summary[f"tied_{key[:-1]}_max_abs_diff_on_ranks"] = all_ranks_values(
                float((here[TIED] - reference[key][TIED]).abs().max())
            )
        result[name] = summary
    return result


# ------------------------------------------------- FSDP2: a shared unit resharded after use or not


class CollectiveCounter(TorchDispatchMode):
    """Counts the collectives this process issues, by kind, and the bytes they move.

    Every eager collective on tensors reaches the dispatcher as a ``c10d::`` operator (the one
    ``torch.distributed.tensor.debug.CommDebugMode`` counts), whichever Python function issued
    it: FSDP2 calls ``dist.all_gather_single`` in torch 2.13 and ``all_gather_into_tensor`` in
    earlier releases, so patching a function would miss one of them. The bytes counted are the
    unsharded size: the gathered output of an all-gather, the full input of a reduce-scatter.
    While counting, it also samples how many parameter bytes ``model`` holds unsharded.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.phase = "forward"  # set by the caller: "forward" or "backward"
        self.gathered: list[tuple[str, int]] = []  # (phase, numel) of every all-gather
        self.peak_unsharded_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "c10d":
            kind = "all_gather" if "allgather" in func.name() else func.name().split("::")[1]
            kind = "reduce_scatter" if "reduce_scatter" in kind else kind
            tensors = [
                [
                    t
                    for t in (a if isinstance(a, (list, tuple)) else [a])
                    if isinstance(t, torch.Tensor)
                ]
                for a in args[:2]
            ]
            size = max(sum(t.numel() * t.element_size() for t in ts) for ts in tensors)
            self.calls[kind] = self.calls.get(kind, 0) + 1
            self.bytes[kind] = self.bytes.get(kind, 0) + size
            if kind == "all_gather":
                self.gathered.append((self.phase, sum(t.numel() for t in tensors[0])))
        self.peak_unsharded_bytes = max(self.peak_unsharded_bytes, unsharded_bytes(self.model))
        return out


def unsharded_bytes(model: nn.Module) -> int:
    """Parameter bytes ``model`` holds whole on this process. FSDP2 registers a parameter as a
    sharded ``DTensor`` and swaps in the plain, gathered tensor while its unit is unsharded."""
    from torch.distributed.tensor import DTensor

    return sum(
        p.numel() * p.element_size() for p in model.parameters() if not isinstance(p, DTensor)
    )


def gathered_numel(params: list[torch.Tensor], world: int) -> int:
    """Elements one all-gather of these parameters returns (FSDP2 pads dim 0 of each to a
    multiple of ``world``)."""
    return sum(-(-p.shape[0] // world) * world * (p.numel() // p.shape[0]) for p in params)


def run_reshard(device, rank: int, world: int) -> dict:
    """ALBERT's shared layer under FSDP2 with ``reshard_after_forward`` True and False: the
    collectives of a training step, the parameter bytes held unsharded, and the weights."""
    inputs, targets = global_batch("albert", world)
    reference = train(build("albert").to(device), inputs, targets, device)
    rows = slice(rank * PER_RANK_BATCH, (rank + 1) * PER_RANK_BATCH)
    x, y = inputs[rows].to(device), targets[rows].to(device)
    result: dict = {"depths": len(build("albert").encoder.layers), "runs": []}
    for reshard in (True, False):
        model = build("albert").to(device)
        names = {id(m): name for name, m in model.named_modules()}
        # Which unit an all-gather belongs to, by its size (distinct here): the root unit takes
        # what no other unit holds.
        labels, in_units = {}, set()
        for unit in fsdp_units(model, candidates("albert", model)):
            params = list({id(p): p for m in unit for p in m.parameters()}.values())
            in_units |= {id(p) for p in params}
            labels[gathered_numel(params, world)] = "+".join(names[id(m)] for m in unit)
        root = [p for p in model.parameters() if id(p) not in in_units]
        labels.setdefault(gathered_numel(root, world), "root")
        shard_model(model, candidates("albert", model), reshard_after_forward=reshard)
        optimizer = adamw(model)
        steps, losses = [], []
        for _ in range(STEPS):
            counter = CollectiveCounter(model)
            with counter:
                optimizer.zero_grad(set_to_none=True)
                loss = model(x, y)
                after_forward = unsharded_bytes(model)
                counter.phase = "backward"  # (and the optimizer step, which gathers nothing)
                loss.backward()
                optimizer.step()
            gathers: dict[str, dict[str, int]] = {"forward": {}, "backward": {}}
            sequence = []
            for phase, numel in counter.gathered:
                label = labels.get(numel, "other")
                gathers[phase][label] = gathers[phase].get(label, 0) + 1
                sequence.append([phase, label])
            steps.append(
                {
                    "all_gather_calls": counter.calls.get("all_gather", 0),
                    "all_gather_bytes": counter.bytes.get("all_gather", 0),
                    "reduce_scatter_calls": counter.calls.get("reduce_scatter", 0),
                    "reduce_scatter_bytes": counter.bytes.get("reduce_scatter", 0),
                    "other_collectives": {
                        k: v
                        for k, v in counter.calls.items()
                        if k not in ("all_gather", "reduce_scatter")
                    },
                    "all_gathers_by_unit": gathers,  # {phase: {unit: calls}}
                    "all_gather_sequence": sequence,  # [phase, unit] of each, in order
                    "peak_unsharded_bytes": counter.peak_unsharded_bytes,
                    "unsharded_bytes_after_forward": after_forward,
                }
            )
            loss = loss.detach()
            dist.all_reduce(loss)
            losses.append(float(loss) / world)
        weights = {name: full(p) for name, p in model.named_parameters()}
        shards = sum(
            getattr(p, "to_local", p.detach)().numel() * p.element_size()
            for p in model.parameters()
        )
        result["runs"].append(
            {
                "reshard_after_forward": reshard,
                "steps": steps,
                "same_every_step": all(step == steps[0] for step in steps),
                "sharded_bytes_per_rank": shards,
                "model_bytes": sum(w.numel() * w.element_size() for w in weights.values()),
                "weight_max_abs_diff": max_difference(weights, reference["weights"]),
                "loss_max_abs_diff": max(
                    abs(a - b) for a, b in zip(losses, reference["losses"], strict=True)
                ),
                "weights": weights,  # compared below; not written to the JSON
            }
        )
    first, second = (run.pop("weights") for run in result["runs"])
    result["true_vs_false_weight_max_abs_diff"] = max_difference(first, second)
    return result


def check(results: dict) -> list[str]:
    """Every claim the appendix makes, as a list of failures (empty: all hold)."""
    failures = []
    runs = {f"{r['model']}/{r['wrapper']}": r for r in results["runs"]}
    for kind, case in results["reentrant"].items():
        runs[f"{kind}/ddp, use_reentrant=False"] = case["fix_use_reentrant_false"]
        runs[f"{kind}/ddp, reentrant, static_graph=True"] = case["fix_static_graph"]
        message = case["wrap_ddp_error"] or ""
        if "use_reentrant=False" not in message or "static_graph=True" not in message:
            failures.append(f"{kind}: wrap_ddp did not refuse reentrant sharing: {message!r}")
    for name, run in runs.items():
        if "error" in run:
            failures.append(f"{name}: {run['error']}")
            continue
        keys = ("grad_max_abs_diff", "weight_max_abs_diff", "loss_max_abs_diff", "replica_spread")
        for key in keys:
            if not run[key] <= TOLERANCE:
                failures.append(f"{name}: {key} = {run[key]:.3g} > {TOLERANCE}")
        if not all(run["ties_hold_on_ranks"]):
            failures.append(f"{name}: ties broken on ranks {run['ties_hold_on_ranks']}")
        saved = run.get("checkpoint")
        if saved is not None:
            if not saved["ties_hold"]:
                failures.append(f"{name}: the checkpoint lost a tie")
            for key in ("sharded_reload_max_abs_diff", "optimizer_reload_max_abs_diff"):
                if saved[key] != 0:  # a checkpoint round trip is exact
                    failures.append(f"{name}: {key} = {saved[key]:.3g}, not 0")
            if not saved["weight_max_abs_diff"] <= TOLERANCE:
                failures.append(
                    f"{name}: checkpoint weights differ by {saved['weight_max_abs_diff']}"
                )
    failures += check_pipeline(results["pipeline"])
    failures += check_reshard(results["reshard"])
    return failures


def check_pipeline(pipeline: dict) -> list[str]:
    """The pipeline's claims: with the all-reduce, one process's answer and equal copies;
    without it, copies that drift apart from the first step on."""
    if "skipped" in pipeline:
        return []
    failures = []
    synced, unsynced = pipeline["with_all_reduce"], pipeline["without_all_reduce"]
    values = [synced[k] for k in ("grad_max_abs_diff", "weight_max_abs_diff", "loss_max_abs_diff")]
    values += synced["tied_grad_max_abs_diff_on_ranks"] + synced["copy_spread_after_step"]
    values += [synced["copy_spread_at_start"], unsynced["copy_spread_at_start"]]
    if not max(values) <= TOLERANCE:
        failures.append(f"pipeline with the all-reduce: a difference of {max(values):.3g}")
    for name, run in pipeline.items():
        if isinstance(run, dict) and not run["covers_every_parameter"]:
            failures.append(f"pipeline {name}: the stages do not hold every parameter")
    if not min(synced["share_max_abs_diff_on_ranks"]) > 1e-3:  # each stage has only a share
        failures.append("pipeline: one stage's share is already the whole tied gradient")
    if not (
        unsynced["copy_spread_after_step"][0] > 1e-3 and unsynced["weight_max_abs_diff"] > 1e-3
    ):
        failures.append(
            f"pipeline without the all-reduce: no drift {unsynced['copy_spread_after_step']}"
        )
    if unsynced["losses"][0] != synced["losses"][0]:  # nothing differs before the first step
        failures.append("pipeline: the first losses differ with and without the all-reduce")
    return failures


def check_reshard(reshard: dict) -> list[str]:
    """FSDP2 with reshard_after_forward True and False: the same training, and what must hold
    of the communication (the shared layer gathered at every depth, or once, in forward)."""
    failures = []
    runs = {run["reshard_after_forward"]: run for run in reshard["runs"]}
    for flag, run in runs.items():
        for key in ("weight_max_abs_diff", "loss_max_abs_diff"):
            if not run[key] <= TOLERANCE:
                failures.append(f"reshard_after_forward={flag}: {key} = {run[key]:.3g}")
        if not run["same_every_step"]:
            failures.append(f"reshard_after_forward={flag}: steps communicate differently")
    if not reshard["true_vs_false_weight_max_abs_diff"] <= TOLERANCE:
        failures.append("reshard_after_forward True and False train to different weights")
    true, false = runs[True]["steps"][0], runs[False]["steps"][0]
    layer = "encoder.layers.0"
    if not true["all_gather_calls"] > false["all_gather_calls"]:
        calls = (true["all_gather_calls"], false["all_gather_calls"])
        failures.append(f"reshard_after_forward: all-gathers (True, False) = {calls}")
    forward = (true["all_gathers_by_unit"]["forward"], false["all_gathers_by_unit"]["forward"])
    if forward[0].get(layer) != reshard["depths"] or forward[1].get(layer) != 1:
        failures.append(f"forward gathers of the shared layer (True, False): {forward}")
    if not true["unsharded_bytes_after_forward"] < false["unsharded_bytes_after_forward"]:
        failures.append("reshard_after_forward=True holds no less after forward than False")
    return failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results.json")
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: one GPU per process (NCCL) if there are enough, else CPU",
    )
    args = parser.parse_args()
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    enough_gpus = torch.cuda.is_available() and torch.cuda.device_count() >= local_processes
    cuda = args.device == "cuda" or (args.device == "auto" and enough_gpus)
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "world_size": world,
        "backend": dist.get_backend(),
        "device": device.type,
        "dtype": str(DTYPE).removeprefix("torch."),
        "tolerance": TOLERANCE,
        "torch": torch.__version__,
        "runs": [],
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FSDP2 announces itself on first use
        for kind in ("gpt", "albert"):
            ddp = run_ddp(kind, device, rank, world)
            results["runs"].append({"model": kind, "wrapper": "ddp", **ddp})
            fsdp = run_fsdp(kind, device, rank, world, args.out)
            results["runs"].append({"model": kind, "wrapper": "fsdp2", **fsdp})
        results["fsdp_split"] = run_fsdp_split(device, rank, world)
        results["reentrant"] = run_reentrant(device, rank, world)
        started = time.perf_counter()
        results["pipeline"] = run_pipeline(device, rank, world)
        results["reshard"] = run_reshard(device, rank, world)
        added = time.perf_counter() - started
    failures = check(results)
    results["failures"] = failures
    if rank == 0:
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        for run in results["runs"]:
            print(
                f"{run['model']:>6} {run['wrapper']:>5}: grads differ by "
                f"{run['grad_max_abs_diff']:.1e}, weights by {run['weight_max_abs_diff']:.1e}, "
                f"ties hold on ranks {run['ties_hold_on_ranks']}"
            )
        print(f"the pipeline and reshard runs took {added:.1f} s")
        print("all checks passed" if not failures else "FAILED:\n" + "\n".join(failures))
        print(f"results: {args.out / 'results.json'}")
    dist.destroy_process_group()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
