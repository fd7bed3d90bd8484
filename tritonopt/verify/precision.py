"""bf16 training without fp32 master weights, measured: ``python -m tritonopt.verify --rounding``.

Setups of AdamW on a bf16 model: fp32 master weights (the usual reference: torch
AdamW on an fp32 copy, copied to the bf16 model each step), the same with bf16
optimizer state (tritonopt's ``state_dtype``), pure bf16 (torch AdamW on the bf16
weights), and tritonopt on the bf16 weights with nearest, stochastic and Kahan
rounding. Three measurements:

* trajectory: every setup gets the same gradients (the float64 oracle's, rounded
  to bf16) and its bf16 weights' mean distance to the float64 run is recorded;
* training: every setup trains its own bf16 model on the generated corpus
  (``corpus``) with the same batches; the final loss is evaluated in fp32 on
  held-out batches;
* memory: bytes per parameter of the weights, master copy and optimizer state
  (the gradient not counted);
* step time of tritonopt's rounding modes, side by side on the same parameters.
"""

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

import tritonopt

from ..distance import distance
from .corpus import corpus_tokens
from .presets import TinyGPT

HYPERPARAMETERS = {"lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 1e-2}


@dataclass
class Setup:
    """A way to step a bf16 model: ``make(params)`` builds the optimizer; ``master``
    keeps an fp32 copy that the optimizer updates and the model is rounded from."""

    name: str
    make: Callable[[list[nn.Parameter]], torch.optim.Optimizer]
    master: bool = False


SETUPS = [
    Setup("fp32 master weights (torch AdamW)", lambda p: torch.optim.AdamW(p, foreach=False, **HYPERPARAMETERS), True),
    Setup("fp32 master, bf16 state (tritonopt)", lambda p: tritonopt.AdamW(p, state_dtype=torch.bfloat16, **HYPERPARAMETERS), True),
    Setup("pure bf16 (torch AdamW)", lambda p: torch.optim.AdamW(p, foreach=False, **HYPERPARAMETERS)),
    Setup("bf16, nearest (tritonopt)", lambda p: tritonopt.AdamW(p, **HYPERPARAMETERS)),
    Setup("bf16 + stochastic (tritonopt)", lambda p: tritonopt.AdamW(p, rounding="stochastic", seed=0, **HYPERPARAMETERS)),
    Setup("bf16 + Kahan (tritonopt)", lambda p: tritonopt.AdamW(p, rounding="kahan", **HYPERPARAMETERS)),
]


class Stepper:
    """One setup applied to one bf16 model."""

    def __init__(self, setup: Setup, model: nn.Module):
        self.model = model
        self.params = list(model.parameters())
        self.master = [nn.Parameter(p.detach().float()) for p in self.params] if setup.master else None
        self.optimizer = setup.make(self.master or self.params)

    @torch.no_grad()
    def step(self) -> None:
        if self.master is not None:
            for master, p in zip(self.master, self.params):
                master.grad = p.grad.float()
        self.optimizer.step()
        if self.master is not None:
            for master, p in zip(self.master, self.params):
                p.copy_(master)

    def bytes_per_parameter(self) -> float:
        """Weights, master copy and per-element optimizer state, per parameter."""
        tensors = list(self.params) + list(self.master or [])
        for entry in self.optimizer.state.values():
            tensors += [v for k, v in entry.items() if k != "step" and isinstance(v, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors) / sum(p.numel() for p in self.params)


def _batches(tokens: torch.Tensor, count: int, size: int, context: int, generator: torch.Generator):
    starts = torch.randint(0, tokens.numel() - context - 1, (count, size), generator=generator)
    return [torch.stack([tokens[s : s + context + 1] for s in row]) for row in starts]


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1))


@dataclass
class Result:
    name: str
    bytes_per_parameter: float
    distance: list[float] = field(default_factory=list)  # mean |bf16 weight - float64 run| per step
    losses: list[float] = field(default_factory=list)
    final_loss: float = float("nan")


def compare(steps: int, trajectory_steps: int, seed: int = 0, batch: int = 16, **model: int) -> list[Result]:
    """Run every setup: trajectories on shared gradients, then training runs (``model``:
    TinyGPT's keywords, the preset's by default)."""
    torch.manual_seed(seed)
    base = TinyGPT(**model)
    context = base.positions.num_embeddings
    tokens = corpus_tokens()
    split = int(tokens.numel() * 0.9)
    generator = torch.Generator().manual_seed(seed)
    train = _batches(tokens[:split], steps, batch, context, generator)
    held_out = _batches(tokens[split:], 8, batch, context, generator)
    start = copy.deepcopy(base).to(torch.bfloat16)

    results = []
    oracle = copy.deepcopy(start).to(torch.float64)
    oracle_optimizer = torch.optim.AdamW(oracle.parameters(), foreach=False, **HYPERPARAMETERS)
    steppers = [Stepper(setup, copy.deepcopy(start)) for setup in SETUPS]
    results = [Result(setup.name, stepper.bytes_per_parameter()) for setup, stepper in zip(SETUPS, steppers)]
    for step in range(trajectory_steps):
        oracle_optimizer.zero_grad()
        _loss(oracle, train[step]).backward()
        gradients = [p.grad.to(torch.bfloat16) for p in oracle.parameters()]
        with torch.no_grad():
            for p, g in zip(oracle.parameters(), gradients):
                p.grad = g.double()
        oracle_optimizer.step()
        for stepper, result in zip(steppers, results):
            for p, g in zip(stepper.params, gradients):
                p.grad = g.clone()
            stepper.step()
            measured = distance(stepper.params, list(oracle.parameters()))
            result.distance.append(measured.total_abs / sum(p.numel() for p in stepper.params))
            result.bytes_per_parameter = stepper.bytes_per_parameter()

    for setup, result in zip(SETUPS, results):
        torch.manual_seed(seed)
        stepper = Stepper(setup, copy.deepcopy(start))
        for step in range(steps):
            stepper.optimizer.zero_grad()
            for p in stepper.params:
                p.grad = None
            loss = _loss(stepper.model, train[step])
            loss.backward()
            stepper.step()
            result.losses.append(loss.item())
        evaluated = copy.deepcopy(stepper.model).float()
        with torch.no_grad():
            result.final_loss = statistics.fmean(_loss(evaluated, b).item() for b in held_out)
    return results


def step_times(rounds: int = 30, seed: int = 0, largest_only: bool = False) -> dict[str, float]:
    """Median seconds of one tritonopt AdamW step on the GPT preset's bf16 parameters,
    per rounding mode, the modes interleaved round by round on the same machine (on
    whichever implementation the parameters' device runs: see ``cpu_implementation``);
    ``largest_only`` steps the largest tensor alone (the interpreter's pace)."""
    torch.manual_seed(seed)
    base = list(TinyGPT().to(torch.bfloat16).parameters())
    if largest_only:
        base = [max(base, key=torch.Tensor.numel)]
    runs = {}
    for mode in ("nearest", "stochastic", "kahan"):
        params = [nn.Parameter(p.detach().clone()) for p in base]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-2
        runs[mode] = tritonopt.AdamW(params, rounding=mode, **HYPERPARAMETERS)
        runs[mode].step()  # state allocated outside the timing
    times = {mode: [] for mode in runs}
    for _ in range(rounds):
        for mode, optimizer in runs.items():
            begin = time.perf_counter()
            optimizer.step()
            times[mode].append(time.perf_counter() - begin)
    return {mode: statistics.median(values) for mode, values in times.items()}


def report(results: list[Result], times: dict[str, dict[str, float]], command: str) -> str:
    """The markdown tables; ``times`` maps an implementation's name to ``step_times``."""
    reference = results[0].final_loss
    lines = [
        f"Command: `{command}`. AdamW {HYPERPARAMETERS}, TinyGPT (GPT preset), generated corpus; "
        "tritonopt's CPU path (torch ops) in the trajectories and training runs.",
        "",
        "| setup | bytes/param (weights + master + state) | final loss (held out, fp32 eval) | vs fp32 master | "
        "mean \\|w - w_float64\\| at last trajectory step |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        gap = (r.final_loss / reference - 1) * 100
        lines.append(
            f"| {r.name} | {r.bytes_per_parameter:.1f} | {r.final_loss:.4f} | {gap:+.2f}% | {r.distance[-1]:.3e} |"
        )
    lines += [
        "",
        "Step time of tritonopt.AdamW on the preset's bf16 parameters (median of interleaved rounds; "
        "the interpreted kernels on the largest tensor alone, 65,536 elements):",
        "",
        "| implementation | rounding | step (ms) | vs nearest |",
        "|---|---|---:|---:|",
    ]
    for implementation, modes in times.items():
        for mode, seconds in modes.items():
            lines.append(f"| {implementation} | {mode} | {seconds * 1e3:.2f} | {seconds / modes['nearest']:.2f}x |")
    return "\n".join(lines) + "\n"


def save_plot(results: list[Result], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (trajectory, training) = pyplot.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for r in results:
        trajectory.plot(range(1, len(r.distance) + 1), r.distance, label=r.name)
        window = 10
        smooth = [statistics.fmean(r.losses[max(0, i - window + 1) : i + 1]) for i in range(len(r.losses))]
        training.plot(range(1, len(smooth) + 1), smooth, label=f"{r.name}: {r.final_loss:.3f}")
    trajectory.set(xlabel="step (same gradients)", ylabel="mean |bf16 weight - float64 run|", yscale="log")
    training.set(xlabel="training step", ylabel="training loss (10-step mean)")
    for axis in (trajectory, training):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
