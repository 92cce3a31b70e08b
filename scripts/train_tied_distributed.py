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

Rank 0 writes ``DIR/results.json`` and the checkpoints ``DIR/<model>.safetensors`` (with the
optimizer state in ``DIR/<model>.optimizer.safetensors``). On a machine
with a GPU for every process the same command uses NCCL and one GPU per process; elsewhere gloo
on the CPU (``--device cpu`` or ``cuda`` forces one).
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from shared_lib.checkpoint import load_checkpoint, optimizer_path, save_checkpoint
from shared_lib.distributed import Checkpointed, fsdp_units, shard_model, wrap_ddp
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
        print("all checks passed" if not failures else "FAILED:\n" + "\n".join(failures))
        print(f"results: {args.out / 'results.json'}")
    dist.destroy_process_group()
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
