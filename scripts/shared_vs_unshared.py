"""Benchmark: a BERT-style encoder with and without ALBERT's cross-layer sharing, side by side.

Both encoders have the same shape and do the same work per token; the shared one stores one
layer's weights instead of N. The benchmark measures, in one run and interleaved so that both
see the same machine: step time, tokens per second, FLOPs per step (counted by PyTorch's
``FlopCounterMode``), achieved FLOP/s, model FLOP utilisation (MFU: achieved FLOP/s ÷ the
device's peak, CUDA only), and memory: on CUDA the allocator's peak, everywhere an account of
weights + gradients + Adam state + saved activations from ``shared_lib.profiling``.

    python scripts/shared_vs_unshared.py                    # CPU: small preset, seconds
    python scripts/shared_vs_unshared.py --preset gpu --json scripts/results/gpu.json

On CUDA the step runs under bf16 autocast (``shared_lib.autocast_for``) and the model is
compiled with ``torch.compile``; batches come from pinned host memory with non-blocking copies,
and times synchronise the GPU (``shared_lib.benchmark``). On the CPU compilation and autocast
are off by default (``--compile`` / ``--amp`` turn them on; compiling takes minutes on a small
CPU, and ``autocast_for`` is a no-op there), and MFU is not reported: a CPU's peak FLOP/s
depends on its vector units, clock and thread count, and no honest single number exists.
See the appendix "Performance on a GPU".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from shared_lib.counting import count_parameters
from shared_lib.models import TransformerConfig, TransformerEncoder
from shared_lib.profiling import memory_report
from shared_lib.training import autocast_for, benchmark, get_device, seed_everything, synchronize

#: Dense bf16 tensor-core peaks in TFLOP/s (vendor data sheets; SXM parts). Matched by
#: substring of ``torch.cuda.get_device_name()``; ``--peak-tflops`` overrides.
PEAK_BF16_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
}


@dataclass(frozen=True)
class Preset:
    """Sizes of one benchmark run."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    batch_size: int
    length: int
    rounds: int
    repeats: int


PRESETS = {
    # Small enough for a busy 2-core CPU (the appendix runs it while the site is built).
    "cpu": Preset(1024, 64, 6, 2, batch_size=8, length=32, rounds=5, repeats=3),
    # BERT-base / ALBERT-base shape (E = H, so sharing is the only difference).
    "gpu": Preset(30000, 768, 12, 12, batch_size=32, length=512, rounds=5, repeats=10),
    # A few seconds anywhere: for the tests.
    "smoke": Preset(128, 32, 2, 2, batch_size=2, length=16, rounds=1, repeats=1),
}


class EncoderLM(nn.Module):
    """Encoder + masked-LM scores through the word embedding (the BERT/ALBERT decoder tie)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(config)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.encoder(input_ids)
        return F.linear(hidden, self.encoder.word_embeddings.weight)


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def build(preset: Preset, share: str) -> EncoderLM:
    config = TransformerConfig(
        vocab_size=preset.vocab_size,
        hidden_size=preset.hidden_size,
        num_layers=preset.num_layers,
        num_heads=preset.num_heads,
        intermediate_size=4 * preset.hidden_size,
        max_position=max(512, preset.length),
        share=share,
        pooler=False,
    )
    seed_everything(0)
    return EncoderLM(config)


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    """The device's dense bf16 peak, or ``None`` where it is unknown (every CPU)."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def run(args: argparse.Namespace) -> dict:
    device = get_device(args.device)
    cuda = device.type == "cuda"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    compile_model = cuda if args.compile is None else args.compile
    amp = cuda if args.amp is None else args.amp
    overrides = {key: getattr(args, key) for key in ("rounds", "repeats")}
    preset = replace(PRESETS[args.preset], **{k: v for k, v in overrides.items() if v is not None})
    seed_everything(0)
    tokens = preset.batch_size * preset.length
    # One batch in host memory, pinned on CUDA so the copy can overlap (non_blocking).
    ids_host = torch.randint(0, preset.vocab_size, (preset.batch_size, preset.length))
    targets_host = torch.randint(0, preset.vocab_size, (preset.batch_size, preset.length))
    if cuda:
        ids_host, targets_host = ids_host.pin_memory(), targets_host.pin_memory()

    variants: dict[str, dict] = {}
    steps = {}
    for share in ("none", "all"):
        # Device memory already held (by the variant built before) is not this variant's.
        baseline = torch.cuda.memory_allocated(device) if cuda else 0
        model = build(preset, share).to(device)
        ids, targets = ids_host.to(device), targets_host.to(device)
        report = memory_report(model, ids, lm_loss, "adamw", targets=targets)
        del ids, targets
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=cuda)
        forward = torch.compile(model) if compile_model else model

        def step(forward=forward, optimizer=optimizer) -> None:
            ids = ids_host.to(device, non_blocking=cuda)
            targets = targets_host.to(device, non_blocking=cuda)
            with autocast_for(device, amp):
                loss = lm_loss(forward(ids), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        start = time.perf_counter()
        step()  # compiles, if asked, and creates the optimizer state
        synchronize(device)
        first_step = time.perf_counter() - start
        peak_memory = None
        if cuda:  # the allocator's peak over one step: weights, grads, Adam state, activations
            torch.cuda.reset_peak_memory_stats(device)
            step()
            synchronize(device)
            peak_memory = torch.cuda.max_memory_allocated(device) - baseline
        steps[share] = step
        variants[share] = {
            "share": share,
            "unique_parameters": count_parameters(model),
            "per_use_parameters": count_parameters(model, unique=False),
            "flops_per_step": report.flops,
            "estimated_training_bytes": report.total,
            "weights_grads_adam_bytes": report.parameter_side,
            "activation_bytes": report.activations,
            "first_step_seconds": first_step,
            "peak_memory_bytes": peak_memory,
            "round_seconds": [],
            "round_cpu_seconds": [],
        }
    # Interleave the variants round by round, so that both see the same machine.
    # On a shared CPU, wall time also counts waiting for a core; this process's CPU time per step
    # (all its threads) is the steadier measure of the work there.
    for _ in range(preset.rounds):
        for share, step in steps.items():
            cpu_start = time.process_time()
            seconds = benchmark(step, device=device, warmup=1, repeats=preset.repeats)
            cpu_seconds = (time.process_time() - cpu_start) / (1 + preset.repeats)
            variants[share]["round_seconds"].append(seconds)
            variants[share]["round_cpu_seconds"].append(cpu_seconds)
    peak = peak_tflops(device, args.peak_tflops)
    for row in variants.values():
        seconds = statistics.median(row["round_seconds"])
        row["step_seconds"] = seconds
        row["step_cpu_seconds"] = statistics.median(row["round_cpu_seconds"])
        row["tokens_per_second"] = tokens / seconds
        row["achieved_tflops"] = row["flops_per_step"] / seconds / 1e12
        row["mfu"] = row["achieved_tflops"] / peak if peak else None
        # Rates per second of this process's CPU time: the steadier CPU measure (see above).
        row["tokens_per_cpu_second"] = tokens / row["step_cpu_seconds"]
        row["achieved_tflops_cpu_time"] = row["flops_per_step"] / row["step_cpu_seconds"] / 1e12
    shared, unshared = variants["all"], variants["none"]
    ratios = {
        "step_time": shared["step_seconds"] / unshared["step_seconds"],
        "step_cpu_time": shared["step_cpu_seconds"] / unshared["step_cpu_seconds"],
        "tokens_per_second": shared["tokens_per_second"] / unshared["tokens_per_second"],
        "tokens_per_cpu_second": (
            shared["tokens_per_cpu_second"] / unshared["tokens_per_cpu_second"]
        ),
        "flops_per_step": shared["flops_per_step"] / unshared["flops_per_step"],
        "unique_parameters": shared["unique_parameters"] / unshared["unique_parameters"],
        "estimated_training_bytes": (
            shared["estimated_training_bytes"] / unshared["estimated_training_bytes"]
        ),
    }
    if cuda:
        ratios["peak_memory"] = shared["peak_memory_bytes"] / unshared["peak_memory_bytes"]
    return {
        "preset": args.preset,
        "sizes": asdict(preset),
        "device": torch.cuda.get_device_name(device) if cuda else f"CPU ({device})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "compile": compile_model,
        "bf16_autocast": amp and cuda,
        "peak_tflops": peak,
        "tokens_per_step": tokens,
        "variants": variants,
        "ratios": ratios,
    }


def _mib(count: float) -> str:
    return f"{count / 2**20:,.1f}"


def table(result: dict) -> str:
    """The result as a Markdown table, shared/unshared ratios in the last row.

    On CUDA the rates (tokens/s, GFLOP/s) come from wall-clock time; on the CPU from the
    process's CPU time, and the wall-clock step time is shown beside it.
    """
    cuda = "peak_memory" in result["ratios"]
    memory = "peak memory (MiB)" if cuda else "est. memory (MiB)"
    per = "s" if cuda else "CPU-s"
    header = [
        "sharing",
        "unique params",
        "step (ms)",
        f"tokens/{per}",
        "GFLOP/step",
        f"GFLOP/{per}",
        "MFU",
        memory,
    ]
    if not cuda:
        header.insert(3, "step CPU (ms)")
    ratios = result["ratios"]
    tokens_ratio = ratios["tokens_per_second" if cuda else "tokens_per_cpu_second"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, key in (("none (BERT)", "none"), ("all (ALBERT)", "all"), ("ratio", None)):
        if key is None:
            row = [
                "ratio all/none",
                f"{ratios['unique_parameters']:.3f}",
                f"{ratios['step_time']:.2f}",
                f"{tokens_ratio:.2f}",
                f"{ratios['flops_per_step']:.3f}",
                f"{tokens_ratio:.2f}",
                "",
                f"{ratios['peak_memory' if cuda else 'estimated_training_bytes']:.2f}",
            ]
            if not cuda:
                row.insert(3, f"{ratios['step_cpu_time']:.2f}")
        else:
            variant = result["variants"][key]
            tokens = variant["tokens_per_second" if cuda else "tokens_per_cpu_second"]
            row = [
                name,
                f"{variant['unique_parameters']:,}",
                f"{variant['step_seconds'] * 1e3:.1f}",
                f"{tokens:,.0f}",
                f"{variant['flops_per_step'] / 1e9:.2f}",
                f"{variant['achieved_tflops' + ('' if cuda else '_cpu_time')] * 1e3:,.1f}",
                "n/a" if variant["mfu"] is None else f"{variant['mfu']:.1%}",
                _mib(variant["peak_memory_bytes" if cuda else "estimated_training_bytes"]),
            ]
            if not cuda:
                row.insert(3, f"{variant['step_cpu_seconds'] * 1e3:.1f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="sizes (default: gpu on CUDA, cpu elsewhere)",
    )
    parser.add_argument("--device", default=None, help="force a device, e.g. cpu")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model (default: on CUDA only)",
    )
    parser.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on CUDA only; no-op on the CPU)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per round")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="the device's peak TFLOP/s for MFU (default: from a table)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    if args.preset is None:
        args.preset = "gpu" if get_device(args.device).type == "cuda" else "cpu"
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    result = run(args)
    print(
        f"device: {result['device']}, torch {result['torch']}, compile={result['compile']}, "
        f"bf16 autocast={result['bf16_autocast']}, preset={result['preset']}"
    )
    print(table(result))
    first = {key: f"{row['first_step_seconds']:.1f} s" for key, row in result["variants"].items()}
    print(f"first step (compilation, optimizer state): none {first['none']}, all {first['all']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
