"""python -m tritonopt.verify: a parity report of an optimizer against torch and a float64 oracle.

Runs the candidate (tritonopt's optimizer by default, or ``--candidate
module:Name``) and torch's on a model preset's parameters in ``--dtype``, beside
torch's optimizer in float64 from the same initial values and gradients (see
``trajectory``). Prints, per step, each run's largest absolute error and
largest error in ULPs of the dtype against the oracle, and the largest distance
between candidate and torch in ULPs; saves the same as a PNG under ``--out``.
The three are independent trajectories: in 16-bit they drift apart at random,
so a step where the candidate's error exceeds torch's is reported, not failed
(``tritonopt.testing`` checks "never less accurate" step by step from a shared
state).
"""

import argparse
import importlib
import sys
from pathlib import Path

import torch

import tritonopt

from .plot import save_plot
from .presets import PRESETS
from .trajectory import run

REFERENCES = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
CANDIDATES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
# The keyword arguments each optimizer is built with (candidate, torch and the oracle alike).
OPTIMIZER_KWARGS = {
    "sgd": {"lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4},
    "adam": {"lr": 1e-3, "weight_decay": 1e-4},
    "adamw": {"lr": 1e-3, "weight_decay": 1e-2},
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def _candidate(optimizer: str, spec: str | None):
    if spec is None:
        name = CANDIDATES[optimizer]
        if not hasattr(tritonopt, name):
            raise SystemExit(f"tritonopt.{name} does not exist in tritonopt {tritonopt.__version__}")
        return getattr(tritonopt, name)
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tritonopt.verify", description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=REFERENCES, default="sgd")
    parser.add_argument("--dtype", choices=DTYPES, default="bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--model", choices=PRESETS, default="lenet")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("verify-report"))
    parser.add_argument("--candidate", help="module:Name of an optimizer class to check instead of tritonopt's")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--rounding", action="store_true",
        help="compare bf16 AdamW setups (fp32 master weights, pure bf16, stochastic, Kahan, bf16 state) "
        "on the gpt preset: --steps training steps (default 300 with --rounding)",
    )
    args = parser.parse_args(argv)
    if args.rounding:
        return _rounding_report(args, argv)

    candidate = _candidate(args.optimizer, args.candidate)
    torch.manual_seed(args.seed)
    preset = PRESETS[args.model](torch.Generator().manual_seed(args.seed))
    dtype = DTYPES[args.dtype]
    hyperparameters = OPTIMIZER_KWARGS[args.optimizer]
    reports = run(
        candidate,
        REFERENCES[args.optimizer],
        preset,
        dtype=dtype,
        steps=args.steps,
        hyperparameters=hyperparameters,
        device=torch.device(args.device),
    )

    name = f"{candidate.__module__}.{candidate.__qualname__}"
    print(f"{name} vs torch.optim.{REFERENCES[args.optimizer].__name__}, {args.dtype}, {args.model} "
          f"({sum(p.numel() for p in preset.model.parameters())} parameters), {hyperparameters}, seed {args.seed}")
    print("error against the float64 oracle (same initial values, same gradients):")
    print(f"{'step':>4}  {'candidate max|e|':>16}  {'ULPs':>8}  {'torch max|e|':>12}  {'ULPs':>8}  {'cand-torch ULPs':>15}")
    for r in reports:
        print(f"{r.step:>4}  {r.candidate.max_abs:>16.3e}  {r.candidate.max_ulp:>8.2f}  "
              f"{r.torch.max_abs:>12.3e}  {r.torch.max_ulp:>8.2f}  {r.candidate_vs_torch_ulp:>15.2f}")
    worse = [r.step for r in reports if r.candidate.total_abs > r.torch.total_abs]
    print(f"candidate within {max(r.candidate_vs_torch_ulp for r in reports):.2f} ULP of torch; "
          f"max error {max(r.candidate.max_ulp for r in reports):.2f} ULP vs torch's {max(r.torch.max_ulp for r in reports):.2f}")
    print(f"steps where the candidate's summed |error| exceeds torch's: {len(worse)} of {len(reports)} {worse}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot = args.out / f"verify-{args.optimizer}-{args.dtype}-{args.model}.png"
    save_plot(reports, f"{name} vs torch, {args.dtype}, {args.model}", plot)
    print(f"plot: {plot}")
    return 0


def _rounding_report(args, argv) -> int:
    from . import precision

    steps = args.steps if "--steps" in (argv or sys.argv) else 300
    with tritonopt.cpu_implementation("torch"):
        results = precision.compare(steps=steps, trajectory_steps=min(steps, 100), seed=args.seed)
        times = {"CPU, torch path": precision.step_times()}
    if tritonopt.kernels_interpreted():
        with tritonopt.cpu_implementation("triton"):
            times["CPU, interpreted kernels"] = precision.step_times(rounds=5, largest_only=True)
    command = "python -m tritonopt.verify --rounding" + (f" --steps {steps}" if steps != 300 else "")
    if tritonopt.kernels_interpreted():
        command = "TRITON_INTERPRET=1 " + command
    table = precision.report(results, times, command)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rounding.md").write_text(table)
    plot = args.out / "rounding-gpt.png"
    precision.save_plot(results, f"AdamW on a bf16 TinyGPT, {steps} steps", plot)
    print(f"table: {args.out / 'rounding.md'}\nplot: {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
