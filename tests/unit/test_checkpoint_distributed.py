"""shared_lib.checkpoint with FSDP2-sharded and DDP models: two processes, gloo on the CPU.

One launch of ``checkpoint_ranks.py`` under ``torch.distributed.run`` runs every check on both
ranks (see that script); this test asserts that each held on both.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).with_name("checkpoint_ranks.py")
CHECKS = [
    "sharded->file: the file exists on every rank once save_checkpoint returns",
    "sharded->file->plain: weights exact",
    "sharded->file->plain: AdamW state exact",
    "sharded->file->plain: ties hold",
    "sharded->file->plain: metadata",
    "sharded->file: a failed write raises on every rank",
    "plain->file->sharded: weights exact",
    "plain->file->sharded: AdamW state exact",
    "plain->file->sharded: ties hold",
    "plain->file->sharded untied: refused, ties cannot be re-made after sharding",
    "plain->file->sharded: the next step equals one process's (1e-12)",
    "ddp->file: names without 'module.'",
    "ddp->file->plain: weights exact",
    "ddp->file->plain: AdamW state exact",
    "ddp->file->plain: ties hold",
    "file->ddp: weights exact, ties hold",
]


@pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="needs torch.distributed with gloo",
)
def test_sharded_and_ddp_checkpoints_round_trip_on_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(HELPER), str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert list(results) == CHECKS
    failed = [name for name, held in results.items() if not held]
    assert not failed, f"failed on some rank: {failed}"
