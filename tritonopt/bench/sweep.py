"""``python -m tritonopt.bench.sweep``: time the kernels at every launch configuration and
propose the ``LAUNCH_TABLE`` entry for this device.

Each case (SGD with momentum and AdamW, float32; one launch of 2^26 elements, one of
2^20, and 500 groups of 20 x 1,000, i.e. 500 launches of 20,000 elements) is built
once through the public optimizers; then, for every block size (512 to 4096) and
warp count (2 to 8), ``override_launch_config`` imposes the configuration, two
warm-up steps compile it, and ``--repeats`` steps are timed. On CUDA the figure
compared is the device time of a step's kernels from torch.profiler (a many-small
step is otherwise dominated by host time); elsewhere the step's wall time.

The proposal takes, per size, the configuration with the lowest mean of
time / best time over the optimizers, among those giving every thread at least 8
elements (16-byte accesses for 2-byte dtypes too); rows split at the geometric
means between the measured sizes. The JSON is rewritten after every measurement,
so a run cut short keeps what it measured. Exit status 3 when the kernels never
asked ``launch_config`` (nothing could be swept).
"""

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import triton

import tritonopt
from tritonopt.kernels import device_key, override_launch_config

from . import timing

BLOCK_SIZES = (512, 1024, 2048, 4096)
WARPS = (2, 4, 8)
MIN_ELEMENTS_PER_THREAD = 8
# size name -> (groups, tensors per group, elements per tensor); one launch per group
SIZES = {
    "cuda": {"many-small": (500, 20, 1_000), "mid": (1, 1, 2**20), "large": (1, 1, 2**26)},
    "cpu": {"many-small": (20, 10, 100), "mid": (1, 1, 2**14), "large": (1, 1, 2**16)},
    "tiny": {"tiny": (2, 2, 100)},
}
OPTIMIZERS = {
    "SGD": (tritonopt.SGD, {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}),
    "AdamW": (tritonopt.AdamW, {"lr": 1e-3, "weight_decay": 1e-2}),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tritonopt.bench.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("sweep.json"), help="JSON file to write")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per configuration")
    parser.add_argument(
        "--tiny", action="store_true", help="one tiny case at one configuration: a plumbing check (seconds)"
    )
    return parser.parse_args(argv)


def build_optimizer(name: str, shape: tuple[int, int, int], device: torch.device) -> torch.optim.Optimizer:
    groups, tensors, elements = shape
    generator = torch.Generator().manual_seed(0)
    param_groups = []
    for _ in range(groups):
        params = []
        for _ in range(tensors):
            param = torch.nn.Parameter(torch.randn(elements, generator=generator).to(device))
            param.grad = torch.randn(elements, generator=generator).to(device)
            params.append(param)
        param_groups.append({"params": params})
    optimizer_class, hyperparameters = OPTIMIZERS[name]
    optimizer = optimizer_class(param_groups, **hyperparameters)
    optimizer.step()  # state and flat gradients: later steps are the steady state
    return optimizer


def kernels_per_step(optimizer: torch.optim.Optimizer, device: torch.device, steps: int) -> tuple[float, float]:
    """(device ms, device operations) per step from torch.profiler (CUDA only): in the
    steady state a step launches only the optimizer's kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            optimizer.step()
        torch.cuda.synchronize(device)
    events = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    return sum(e.device_time_total for e in events) / 1e3 / steps, len(events) / steps


def measure(optimizer: torch.optim.Optimizer, device: torch.device, config: tuple[int, int], repeats: int) -> dict:
    with override_launch_config(*config) as lookups:
        start = time.perf_counter()
        for _ in range(2):
            optimizer.step()
        timing.synchronize(device)
        warmup_s = time.perf_counter() - start
        samples = [timing.time_step(optimizer.step, device)[0] * 1e3 for _ in range(repeats)]
        kernel_ms = kernels = None
        if device.type == "cuda":
            kernel_ms, kernels = kernels_per_step(optimizer, device, max(3, repeats // 4))
    return {
        "block_size": config[0],
        "num_warps": config[1],
        "step_ms": statistics.median(samples),
        "kernel_ms": kernel_ms,
        "kernels_per_step": kernels,
        "warmup_s": warmup_s,
        "launch_config_calls": lookups[0],
    }


def eligible(block_size: int, num_warps: int) -> bool:
    return block_size // (32 * num_warps) >= MIN_ELEMENTS_PER_THREAD


def propose(measurements: list[dict], sizes: dict[str, tuple[int, int, int]]) -> list[list[Any]]:
    """``LAUNCH_TABLE`` rows ``[largest n_elements or None, block_size, num_warps]`` from the measurements."""
    by_size: dict[str, dict[tuple[int, int], list[float]]] = {}
    for name in sizes:
        rows = [m for m in measurements if m["size"] == name and eligible(m["block_size"], m["num_warps"])]
        best = {}
        for m in rows:
            figure = m["kernel_ms"] if m["kernel_ms"] is not None else m["step_ms"]
            best[m["optimizer"]] = min(best.get(m["optimizer"], math.inf), figure)
        scores: dict[tuple[int, int], list[float]] = {}
        for m in rows:
            figure = m["kernel_ms"] if m["kernel_ms"] is not None else m["step_ms"]
            scores.setdefault((m["block_size"], m["num_warps"]), []).append(figure / best[m["optimizer"]])
        complete = {c: s for c, s in scores.items() if len(s) == len(best)}
        if complete:
            by_size[name] = complete
    chosen = [
        (sizes[name][1] * sizes[name][2], min(scores, key=lambda c: (statistics.mean(scores[c]), c)))
        for name, scores in by_size.items()
    ]  # (elements per launch: one group's, configuration)
    chosen.sort()
    rows: list[list[Any]] = []
    for index, (launch_elements, (block_size, num_warps)) in enumerate(chosen):
        last = index == len(chosen) - 1
        largest = None if last else int(math.sqrt(launch_elements * chosen[index + 1][0]))
        if rows and rows[-1][1:] == [block_size, num_warps]:
            rows[-1][0] = largest
        else:
            rows.append([largest, block_size, num_warps])
    return rows


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("tritonopt.bench.sweep: --device cuda, but torch sees no CUDA device")
    sizes = SIZES["tiny" if args.tiny else device.type if device.type in SIZES else "cpu"]
    configs = [(1024, 4)] if args.tiny else [(b, w) for b in BLOCK_SIZES for w in WARPS]
    key = device_key(device)
    record: dict[str, Any] = {
        "command": " ".join(["python -m tritonopt.bench.sweep", *argv]),
        "device_key": key,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "sizes": sizes,
        "repeats": args.repeats,
        "measurements": [],
        "complete": False,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        record["proposed_rows"] = propose(record["measurements"], sizes)
        args.out.write_text(json.dumps(record, indent=1) + "\n")

    write()
    for name in OPTIMIZERS:
        for size, shape in sizes.items():
            optimizer = build_optimizer(name, shape, device)
            for config in configs:
                row = {"optimizer": name, "size": size, **measure(optimizer, device, config, args.repeats)}
                record["measurements"].append(row)
                write()
                if row["launch_config_calls"] == 0:
                    record["error"] = "no launch called launch_config: the kernels do not read the launch table"
                    write()
                    print(f"sweep: {record['error']}; wrote {args.out}", file=sys.stderr)
                    return 3
                kernel = "-" if row["kernel_ms"] is None else f"{row['kernel_ms']:.4f}"
                print(
                    f"{name:6} {size:10} block {config[0]:5} warps {config[1]}: step {row['step_ms']:.4f} ms, "
                    f"kernels {kernel} ms, warm-up {row['warmup_s']:.1f} s",
                    flush=True,
                )
            del optimizer
    record["complete"] = True
    write()
    rows = ", ".join(f"({largest}, {block}, {warps})" for largest, block, warps in record["proposed_rows"])
    print(f"LAUNCH_TABLE entry measured here:\n    {key!r}: ({rows},),\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
