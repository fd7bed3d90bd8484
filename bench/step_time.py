"""Median ``step()`` time of tritonopt.SGD and torch.optim.SGD's three implementations.

    python bench/step_time.py [--tensors 2000] [--numel 1000] [--repeats 30] [--device cpu]
                              [--warmup 5] [--out results.json]

Every implementation gets its own copy of the same random float32 parameters
and gradients (momentum 0.9, weight decay 1e-4); the gradients stay in place
between steps, so each step is a full update. After the warm-up steps the
implementations are timed in turn, one step each per repeat, so that drifting
machine load affects them alike. GB/s counts the bytes an ideal update moves
(read param, grad and momentum buffer; write param and momentum buffer), next to
the bandwidth of a plain ``copy_`` of the same number of elements.
"""

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable

import torch
import triton

import tritonopt
from tritonopt import _backend

HYPERPARAMETERS = {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4}
BYTES_MOVED_PER_ELEMENT = 5 * 4  # three float32 reads and two writes

IMPLEMENTATIONS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "tritonopt.SGD": lambda params: tritonopt.SGD(params, **HYPERPARAMETERS),
    "torch for-loop (foreach=False)": lambda params: torch.optim.SGD(
        params, foreach=False, **HYPERPARAMETERS
    ),
    "torch foreach=True": lambda params: torch.optim.SGD(params, foreach=True, **HYPERPARAMETERS),
    "torch fused=True": lambda params: torch.optim.SGD(params, fused=True, **HYPERPARAMETERS),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line for line in cpuinfo if line.startswith("model name"))
        name = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {torch.get_num_threads()} torch threads"


def tritonopt_path(device: torch.device) -> str:
    if not _backend.uses_triton(device):
        return "torch's fused SGD op over flat buffers"
    return "Triton interpreter" if device.type == "cpu" else "compiled Triton kernels"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=2000, help="number of parameters")
    parser.add_argument("--numel", type=int, default=1000, help="elements per parameter")
    parser.add_argument("--repeats", type=int, default=30, help="timed steps per implementation")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", help="also write the results to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)

    generator = torch.Generator().manual_seed(0)
    shape = (args.tensors, args.numel)
    data = torch.randn(shape, generator=generator).to(device)
    grads = torch.randn(shape, generator=generator).to(device)

    optimizers = {}
    for name, make in IMPLEMENTATIONS.items():
        params = [torch.nn.Parameter(row.clone()) for row in data]
        for param, grad in zip(params, grads):
            param.grad = grad.clone()
        optimizers[name] = make(params)

    for optimizer in optimizers.values():
        for _ in range(args.warmup):
            optimizer.step()
    # The first step moved tritonopt's gradients into its flat buffer and
    # re-pointed .grad there, where autograd would keep accumulating them.
    flat = optimizers["tritonopt.SGD"].param_groups[0]["params"]
    assert len({p.grad.untyped_storage().data_ptr() for p in flat}) == 1, "grads not in flat buffer"

    samples: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(args.repeats):
        for name, optimizer in optimizers.items():
            samples[name].append(timed(device, optimizer.step))
    source, target = data.view(-1), torch.empty_like(data).view(-1)
    copy_times = [timed(device, lambda: target.copy_(source)) for _ in range(args.repeats)]
    copy_time = statistics.median(copy_times)

    elements = args.tensors * args.numel
    copy_gbps = 2 * 4 * elements / copy_time / 1e9
    baseline = statistics.median(samples["tritonopt.SGD"])
    results = []
    for name, times in samples.items():
        median = statistics.median(times)
        results.append(
            {
                "implementation": name,
                "median_ms": median * 1e3,
                "ratio_vs_tritonopt": median / baseline,
                "gb_per_s": BYTES_MOVED_PER_ELEMENT * elements / median / 1e9,
            }
        )

    command = shlex.join(["python", *sys.argv])
    report = {
        "command": command,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "device": str(device),
        "device_name": device_name(device),
        "tritonopt_path": tritonopt_path(device),
        "tensors": args.tensors,
        "numel": args.numel,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "copy_gb_per_s": copy_gbps,
        "results": results,
    }
    print(f"$ {command}")
    print(f"torch {torch.__version__}, triton {triton.__version__}")
    print(f"{device}: {report['device_name']}; tritonopt runs {report['tritonopt_path']}")
    print(f"{args.tensors} float32 parameters x {args.numel} elements, {args.repeats} timed steps")
    print()
    print(f"{'implementation':<32} {'median ms':>10} {'x tritonopt':>12} {'GB/s':>8}")
    for row in results:
        print(
            f"{row['implementation']:<32} {row['median_ms']:>10.3f} "
            f"{row['ratio_vs_tritonopt']:>12.2f} {row['gb_per_s']:>8.1f}"
        )
    copy_row = f"{'(copy_ of as many elements)':<32} {copy_time * 1e3:>10.3f} {'':>12}"
    print(f"{copy_row} {copy_gbps:>8.1f}")
    if args.out:
        with open(args.out, "w") as out:
            json.dump(report, out, indent=2)
            out.write("\n")


if __name__ == "__main__":
    main()
