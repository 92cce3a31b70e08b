"""Checkpoints of sharded (FSDP2) and DDP models on two processes; launched by
tests/unit/test_checkpoint_distributed.py::

    python -m torch.distributed.run --standalone --nproc_per_node=2 checkpoint_ranks.py OUT

A tiny tied GPT (float64, a vocabulary of 33 so that the shards are uneven) is trained one
AdamW step under FSDP2 and under DDP, saved with ``shared_lib.save_checkpoint`` and loaded back
with ``shared_lib.load_checkpoint`` across layouts: sharded -> file -> plain, plain -> file ->
sharded, DDP -> file -> plain. Every rank checks; rank 0 writes ``OUT/results.json``: the name of
each check and whether it held on every rank.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open

from shared_lib import check_ties, load_checkpoint, save_checkpoint, shared_groups
from shared_lib.distributed import shard_model, wrap_ddp
from shared_lib.models import GPT, GPTConfig

VOCAB, LENGTH, BATCH = 33, 8, 4
TIE = [["transformer.wte.weight", "lm_head.weight"]]


def build(seed: int, tie_embeddings: bool = True) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig(
        vocab_size=VOCAB,
        block_size=LENGTH,
        n_layer=2,
        n_head=2,
        n_embd=16,
        tie_embeddings=tie_embeddings,
    )
    return GPT(config).to(torch.float64)


def batch(rank: int | None = None) -> torch.Tensor:
    tokens = torch.randint(
        0, VOCAB, (BATCH, LENGTH + 1), generator=torch.Generator().manual_seed(7)
    )
    if rank is not None:  # this rank's half
        tokens = tokens[rank * BATCH // 2 : (rank + 1) * BATCH // 2]
    return tokens


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, tokens: torch.Tensor) -> None:
    optimizer.zero_grad()
    model(tokens[:, :-1], tokens[:, 1:])[1].backward()
    optimizer.step()


def full(tensor: torch.Tensor) -> torch.Tensor:
    """The whole tensor (gathered from every rank if it is sharded)."""
    return tensor.detach().full_tensor() if hasattr(tensor, "full_tensor") else tensor.detach()


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: full(tensor) for name, tensor in model.state_dict(keep_vars=True).items()}


def moments(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """AdamW's state by parameter name, whole tensors."""
    found = {}
    for name, param in model.named_parameters():
        for key, value in optimizer.state[param].items():
            found[f"{name}.{key}"] = full(value)
    return found


def equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a
    )


def ties_hold(model: torch.nn.Module) -> bool:
    try:
        check_ties(model, TIE)
    except RuntimeError:
        return False
    return shared_groups(model) == TIE


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)


def sharded_to_plain(rank: int, out: Path) -> dict[str, bool]:
    model = shard_model(build(0))
    optimizer = adamw(model)
    step(model, optimizer, batch(rank))
    expected, expected_moments = weights(model), moments(model, optimizer)
    path = out / "sharded.safetensors"
    save_checkpoint(model, path, optimizer, metadata={"step": "1"})  # collective
    exists_everywhere = path.exists() and (out / "sharded.optimizer.safetensors").exists()
    plain = build(1)
    resumed = adamw(plain)
    result = load_checkpoint(plain, path, resumed)
    blocked = out / "a-file"  # a folder that cannot be made: rank 0 fails to write
    if rank == 0:
        blocked.write_text("not a folder")
    dist.barrier()
    try:
        save_checkpoint(model, blocked / "model.safetensors")
        raised = None
    except (OSError, RuntimeError) as error:
        raised = error
    expected_error = OSError if rank == 0 else RuntimeError
    failure_reported = isinstance(raised, expected_error) and (
        rank == 0 or "rank 0 could not write" in str(raised)
    )
    return {
        "sharded->file: the file exists on every rank once save_checkpoint returns": (
            exists_everywhere
        ),
        "sharded->file->plain: weights exact": equal(weights(plain), expected),
        "sharded->file->plain: AdamW state exact": equal(moments(plain, resumed), expected_moments),
        "sharded->file->plain: ties hold": ties_hold(plain) and ties_hold(model),
        "sharded->file->plain: metadata": result == {"step": "1"},
        "sharded->file: a failed write raises on every rank": failure_reported,
    }


def plain_to_sharded(rank: int, out: Path) -> dict[str, bool]:
    plain = build(2)
    plain_optimizer = adamw(plain)
    step(plain, plain_optimizer, batch())
    path = out / "plain.safetensors"
    if rank == 0:
        save_checkpoint(plain, path, plain_optimizer)
    dist.barrier()
    sharded = shard_model(build(3))
    optimizer = adamw(sharded)
    load_checkpoint(sharded, path, optimizer)
    checks = {
        "plain->file->sharded: weights exact": equal(weights(sharded), weights(plain)),
        "plain->file->sharded: AdamW state exact": equal(
            moments(sharded, optimizer), moments(plain, plain_optimizer)
        ),
        "plain->file->sharded: ties hold": ties_hold(sharded),
    }
    untied = shard_model(build(8, tie_embeddings=False))
    try:
        load_checkpoint(untied, path)
        refusal = ""
    except ValueError as error:
        refusal = str(error)
    checks["plain->file->sharded untied: refused, ties cannot be re-made after sharding"] = (
        "cannot be re-made after FSDP sharding" in refusal
    )
    step(plain, plain_optimizer, batch())  # training resumes as if never stopped
    step(sharded, optimizer, batch(rank))
    gap = max(
        float((weights(sharded)[name] - value).abs().max())
        for name, value in weights(plain).items()
    )
    checks["plain->file->sharded: the next step equals one process's (1e-12)"] = gap <= 1e-12
    return checks


def ddp_to_plain(rank: int, out: Path) -> dict[str, bool]:
    ddp = wrap_ddp(build(4))
    optimizer = adamw(ddp)
    step(ddp, optimizer, batch(rank))
    path = out / "ddp.safetensors"
    if rank == 0:  # DDP: every rank holds everything, one writes, no communication
        save_checkpoint(ddp, path, optimizer)
    dist.barrier()
    with safe_open(path, framework="pt") as handle:
        keys = list(handle.keys())
    plain = build(5)
    resumed = adamw(plain)
    load_checkpoint(plain, path, resumed)
    again = wrap_ddp(build(6))
    load_checkpoint(again, path)
    return {
        "ddp->file: names without 'module.'": not any(k.startswith("module.") for k in keys),
        "ddp->file->plain: weights exact": equal(weights(plain), weights(ddp.module)),
        "ddp->file->plain: AdamW state exact": equal(
            moments(plain, resumed), moments(ddp.module, optimizer)
        ),
        "ddp->file->plain: ties hold": ties_hold(plain),
        "file->ddp: weights exact, ties hold": (
            equal(weights(again.module), weights(ddp.module)) and ties_hold(again.module)
        ),
    }


def main() -> None:
    out = Path(sys.argv[1])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    checks: dict[str, bool] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FSDP2 announces itself on first use
        for run in (sharded_to_plain, plain_to_sharded, ddp_to_plain):
            checks.update(run(rank, out))
    every_rank: list = [None] * dist.get_world_size()
    dist.all_gather_object(every_rank, checks)
    if rank == 0:
        held = {name: all(ranks[name] for ranks in every_rank) for name in checks}
        (out / "results.json").write_text(json.dumps(held, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
