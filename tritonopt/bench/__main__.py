"""``python -m tritonopt.bench``: time every step implementation on every case and report.

Prints a table per case (with ``--captured``, also the host cost of capturable
steps, eager and replayed from a CUDA graph), then the summary (host us per parameter and per group,
new gradients against gradients in place), and writes ``results.json`` and ``chart.png`` (and with
``--profile`` ``trace.json``) under ``--out`` (default
``bench/results/<device name>/``).
"""

import argparse
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import torch
import triton

import tritonopt

from . import captured, plot, profile, report, summary, timing
from .cases import default_cases, with_new_grads
from .implementations import implementations, tritonopt_path
from .run import run_case

COPY_ELEMENTS = {"cuda": 2**26, "cpu": 2**24}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tritonopt.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="*", help="substrings of case names to keep (e.g. gpt2 10000x)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="keep only this dtype")
    parser.add_argument("--repeats", type=int, help="timed steps per implementation (default 30, --quick 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (at least 2)")
    parser.add_argument("--out", type=Path, help="output folder (default bench/results/<device name>/)")
    parser.add_argument("--quick", action="store_true", help="smaller CPU sizes, fewer cases and repeats")
    parser.add_argument("--tiny", action="store_true", help="one tiny case: checks the plumbing in seconds, measures nothing")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its compiling takes minutes)")
    parser.add_argument("--profile", action="store_true", help="also write a Chrome trace of a few steps")
    parser.add_argument("--interpreter", action="store_true", help="also time tritonopt under Triton's interpreter (CPU)")
    parser.add_argument(
        "--captured", action="store_true",
        help="also time capturable steps: eager, replayed from a CUDA graph, torch's, reduce-overhead",
    )
    parser.add_argument(
        "--new-grads", action="store_true",
        help="also measure every case with new gradient tensors each step (the default zero_grad() loop)",
    )
    return parser.parse_args(argv)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next(line for line in cpuinfo if line.startswith("model name"))
        name = model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name} {os.cpu_count()} cores"


def folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")


def _reexec_interpreted(argv: list[str]) -> None:
    """Kernels are interpreted only if ``TRITON_INTERPRET=1`` was set before ``import
    tritonopt``; ``python -m tritonopt.bench`` has imported it already, so run again."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    sys.exit(subprocess.call([sys.executable, "-m", "tritonopt.bench", *argv], env=env))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.interpreter and not tritonopt.kernels_interpreted():
        _reexec_interpreted(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("tritonopt.bench: --device cuda, but torch sees no CUDA device")
    repeats = args.repeats or (15 if args.quick else 30)
    cases = default_cases(device.type, args.quick, args.tiny)
    if args.cases:
        cases = [c for c in cases if any(part in c.name for part in args.cases)]
    if args.dtype:
        cases = [c for c in cases if str(c.dtype) == f"torch.{args.dtype}"]
    if args.new_grads:
        cases = with_new_grads(cases)
    name = device_name(device)
    out = args.out or Path("bench/results") / folder_name(name)
    out.mkdir(parents=True, exist_ok=True)

    copy_elements = 2**16 if args.tiny else COPY_ELEMENTS.get(device.type, 2**24)
    copy_gb_per_s = timing.copy_bandwidth(device, copy_elements, max(repeats, 20))
    command = shlex.join(["python", "-m", "tritonopt.bench", *argv])
    header = [
        f"$ {command}",
        f"{device}: {name}; torch {torch.__version__} ({torch.get_num_threads()} threads), triton {triton.__version__}",
        f"tritonopt runs {tritonopt_path(device)}",
        f"copy_ bandwidth: {copy_gb_per_s:.1f} GB/s; median of {repeats} timed steps after {max(args.warmup, 2)} warm-up",
    ]
    print("\n".join(header), flush=True)
    chosen = implementations(args.interpreter)
    if args.tiny or args.no_compile:  # torch.compile alone would take 20 s of a tiny run
        chosen = [i for i in chosen if i.name != "torch.compile"]
    rows = []
    metadata = {
        "command": command,
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "torch_threads": torch.get_num_threads(),
        "tritonopt_path": tritonopt_path(device),
        "copy_gb_per_s": copy_gb_per_s,
        "repeats": repeats,
        "quick": args.quick,
        "complete": False,
    }
    for case in cases:
        case_rows = run_case(case, chosen, device, repeats, args.warmup, copy_gb_per_s)
        print(report.table(case_rows), flush=True)
        rows += case_rows
        if args.captured and not case.new_grads:
            results = captured.measure(case, device, repeats)
            metadata.setdefault("captured", {})[case.name] = results
            print(captured.table(case, results), flush=True)
        report.write_json(out / "results.json", metadata, rows)  # a run cut short keeps its cases
    derived = summary.summarize(cases, rows, copy_gb_per_s)
    metadata["complete"] = True
    metadata["summary"] = derived
    report.write_json(out / "results.json", metadata, rows)
    plot.write_chart(out / "chart.png", rows, copy_gb_per_s, f"{name}, torch {torch.__version__}: {command}")
    if args.profile:
        profile.write_trace(out / "trace.json", cases, chosen, device)
    print("\n" + "\n".join(header))
    print(report.table(rows))
    print(summary.text(derived))
    print(f"\nwrote {out}/results.json, {out}/chart.png" + (f", {out}/trace.json" if args.profile else ""))


if __name__ == "__main__":
    main(sys.argv[1:])
