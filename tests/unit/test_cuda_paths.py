"""The CUDA-only code paths of shared_lib.training, and the benchmark that relies on them.

bf16 autocast, timing that synchronises the GPU, pinned memory with non-blocking copies, the
``fit`` loop on CUDA and the allocator's peak memory: these tests run on a machine with a CUDA
GPU and are skipped elsewhere. The benchmark's smoke test runs on whatever device there is.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import shared_lib as sl
from shared_lib.training import to_device

ROOT = Path(__file__).resolve().parents[2]


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def load_benchmark():
    path = ROOT / "scripts" / "shared_vs_unshared.py"
    spec = importlib.util.spec_from_file_location("shared_vs_unshared", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@needs_cuda
def test_autocast_for_runs_matmuls_in_bf16_on_cuda():
    a = torch.randn(64, 64, device="cuda")
    with sl.autocast_for("cuda"):
        assert (a @ a).dtype == torch.bfloat16
    with sl.autocast_for("cuda", enabled=False):
        assert (a @ a).dtype == torch.float32


@needs_cuda
def test_synchronize_waits_for_queued_work():
    a = torch.randn(4096, 4096, device="cuda")
    for _ in range(20):
        a = a @ a / 64
    sl.synchronize("cuda")
    assert torch.cuda.current_stream().query()  # nothing left in the queue


@needs_cuda
def test_benchmark_times_the_work_not_its_launch():
    a = torch.randn(4096, 4096, device="cuda")

    def work() -> None:
        for _ in range(10):
            a @ a

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    work()
    start.record()
    work()
    end.record()
    torch.cuda.synchronize()
    gpu_seconds = start.elapsed_time(end) / 1e3
    seconds = sl.benchmark(work, device="cuda", warmup=1, repeats=5)
    # Without synchronising, the clock would see only the launches, a small fraction of this.
    assert seconds > 0.5 * gpu_seconds


@needs_cuda
def test_pinned_batches_are_copied_without_blocking_and_arrive_intact():
    batch = [torch.randn(256, 32).pin_memory(), torch.randint(0, 10, (256,)).pin_memory()]
    moved = to_device(batch, torch.device("cuda"))
    assert all(t.is_cuda for t in moved)
    assert torch.equal(moved[0].cpu(), batch[0]) and torch.equal(moved[1].cpu(), batch[1])


@needs_cuda
def test_fit_and_evaluate_train_on_cuda_with_pinned_loader_and_autocast():
    sl.seed_everything(0)
    inputs = torch.randn(512, 16)
    targets = (inputs[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(inputs, targets), batch_size=64, pin_memory=True)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    torch.cuda.reset_peak_memory_stats()
    history = sl.fit(model, loader, optimizer, epochs=3, device="cuda", amp=True)
    assert next(model.parameters()).is_cuda
    assert history.train_loss[-1] < history.train_loss[0]
    assert all(seconds > 0 for seconds in history.epoch_seconds)
    loss, accuracy = sl.evaluate(model, loader, nn.functional.cross_entropy, "cuda")
    assert loss < history.train_loss[0]
    assert accuracy > 0.8
    assert torch.cuda.max_memory_allocated() > 0


@needs_cuda
def test_benchmark_script_on_cuda_reports_peak_memory_and_compiles():
    bench = load_benchmark()
    result = bench.main(["--preset", "smoke", "--device", "cuda"])
    assert result["compile"] and result["bf16_autocast"]
    for row in result["variants"].values():
        assert row["peak_memory_bytes"] > 0
    assert result["ratios"]["peak_memory"] < 1  # the shared encoder holds fewer weights
    assert abs(result["ratios"]["flops_per_step"] - 1) < 1e-6


def test_benchmark_script_smoke_on_this_device():
    bench = load_benchmark()
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        result = bench.main(["--preset", "smoke", "--threads", "1", "--no-compile"])
    finally:
        torch.set_num_threads(threads)
    assert time.perf_counter() - start < 60
    assert abs(result["ratios"]["flops_per_step"] - 1) < 1e-6
    assert result["ratios"]["unique_parameters"] < 1
    table = bench.table(result)
    assert table.count("\n") == 4 and "ratio all/none" in table
    if not torch.cuda.is_available():
        assert result["peak_tflops"] is None
        assert all(row["mfu"] is None for row in result["variants"].values())
