"""Train with tritonopt and torch.optim side by side, checking parity at every step.

Run as ``python -m tritonopt.demo [--steps N] [--seed S] [--only sgd|adamw]``.
Two runs, each on two identical copies of a model that see the same fixed
synthetic batch (random inputs, random labels, cross-entropy):

1. SGD: the optimizer tutorial's LeNet with per-subnet learning rates, momentum
   and weight decay; both learning rates are decayed by
   ``param_group['lr'] *= 0.1`` halfway through.
2. AdamW, finetuning style: a small MLP with LayerNorm, two groups (weight decay
   on matrices, none on biases and norms), linear warmup then a cosine schedule
   (``LambdaLR``).

Each run prints the learning rates, per-step losses and the largest parameter
difference, and the median ``step()`` times; the demo exits nonzero unless every
parameter matches torch's under ``torch.testing.assert_close``.

On a GPU the compiled Triton kernels run, one launch per step for every group.
On CPU they run in Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
the import, otherwise torch's own ops update the same tensors.
"""

import argparse
import copy
import math
import statistics
import sys
import time

import torch
from torch import nn

import tritonopt
from tritonopt.models import LeNet


def param_groups(net: LeNet) -> list[dict]:
    """The tutorial's layout: the features use the default lr, the classifier its own."""
    return [
        {"params": net.features.parameters()},
        {"params": net.classifier.parameters(), "lr": 1e-1},
    ]


# Moderate learning rates: trained harder, this small network is chaotic enough
# that any last-bit difference in one step (on a GPU, torch's own kernels round
# differently from its CPU for-loop) grows past assert_close's float32 tolerance
# within a few dozen steps.
SGD_KWARGS = {"lr": 2e-2, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}
ADAMW_KWARGS = {"lr": 3e-3, "betas": (0.9, 0.999), "eps": 1e-8}


def finetuning_model() -> nn.Module:
    """A small classifier head with a norm: what the AdamW run finetunes."""
    return nn.Sequential(nn.Linear(48, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 10))


def finetuning_groups(model: nn.Module) -> list[dict]:
    """The usual finetuning split: weight decay on matrices, none on biases and norms."""
    return [
        {"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.05},
        {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0},
    ]


def warmup_cosine(warmup: int, total: int):
    """Linear warmup to the base lr over ``warmup`` steps, then a cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return factor


def describe_path(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}): compiled Triton kernels"
    if tritonopt.uses_triton(device):
        return "cpu: Triton kernels in the Triton interpreter (TRITON_INTERPRET=1)"
    return (
        "cpu: torch's fused and foreach ops on the same tensors "
        "(set TRITON_INTERPRET=1 to run the Triton kernels in the interpreter)"
    )


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [round(group["lr"], 8) for group in optimizer.param_groups]


def side_by_side(title, net, inputs, labels, optimizers, steps, before_step) -> bool:
    """Train ``net`` (tritonopt) and a copy (torch) on one batch; True when they match.

    ``optimizers(model, kind)`` builds the optimizer of ``kind`` ("tritonopt" or
    "torch") for a model; ``before_step(step, optimizer_pair)`` may change the
    learning rates (returns a line to print, or None).
    """
    reference_net = copy.deepcopy(net)
    pair = (optimizers(net, "tritonopt"), optimizers(reference_net, "torch"))
    print(f"==== {title}")
    print(pair[0])
    print(f"{'step':>4}  {'lrs':>24}  {'tritonopt loss':>14}  {'torch loss':>10}  {'max |param diff|':>16}")
    times: dict[str, list[float]] = {"tritonopt": [], "torch": []}
    for step in range(1, steps + 1):
        line = before_step(step, pair)
        if line:
            print(line)
        losses = []
        for name, model, opt in (("tritonopt", net, pair[0]), ("torch", reference_net, pair[1])):
            opt.zero_grad()  # the default, set_to_none=True: tritonopt reads the fresh gradients in place
            loss = nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            if inputs.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            opt.step()
            if inputs.device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            losses.append(loss.item())
        lr_text = ", ".join(f"{lr:.2e}" for lr in lrs(pair[0]))
        print(f"{step:>4}  {lr_text:>24}  {losses[0]:>14.6f}  {losses[1]:>10.6f}  {max_difference(net, reference_net):>16.3e}")
    for name, samples in times.items():
        print(f"median step() time, {name:>9}: {statistics.median(samples) * 1e3:8.3f} ms")
    print(f"final max |param diff|: {max_difference(net, reference_net):.3e}")
    try:
        for (name, param), expected in zip(net.named_parameters(), reference_net.parameters()):
            torch.testing.assert_close(param, expected, msg=lambda m, name=name: f"{name}: {m}")
    except AssertionError as error:
        print(f"FAIL: {title}: tritonopt diverged from torch.optim\n{error}\n")
        return False
    print(f"OK: all {len(list(net.parameters()))} parameters match torch.optim (assert_close)\n")
    return True


def sgd_run(device: torch.device, steps: int) -> bool:
    net = LeNet().to(device)
    images = torch.randn(64, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (64,), device=device)

    def optimizers(model, kind):
        optimizer_class = tritonopt.SGD if kind == "tritonopt" else torch.optim.SGD
        return optimizer_class(param_groups(model), **SGD_KWARGS)

    def decay_halfway(step, pair):
        if step != steps // 2 + 1:
            return None
        before = lrs(pair[0])
        for opt in pair:
            for group in opt.param_groups:
                group["lr"] *= 0.1
        return f"---- lr decay through param_groups: {before} -> {lrs(pair[0])} (torch: {lrs(pair[1])})"

    title = "SGD: LeNet, features lr 2e-2 and classifier lr 1e-1, momentum 0.9, decay x0.1 halfway"
    return side_by_side(title, net, images, labels, optimizers, steps, decay_halfway)


def adamw_run(device: torch.device, steps: int) -> bool:
    net = finetuning_model().to(device)
    inputs = torch.randn(64, 48, device=device)
    labels = torch.randint(0, 10, (64,), device=device)
    schedulers = []

    def optimizers(model, kind):
        optimizer_class = tritonopt.AdamW if kind == "tritonopt" else torch.optim.AdamW
        optimizer = optimizer_class(finetuning_groups(model), **ADAMW_KWARGS)
        schedulers.append(torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(max(1, steps // 8), steps)))
        return optimizer

    def schedule(step, pair):
        if step > 1:
            for scheduler in schedulers:
                scheduler.step()
        return None

    title = "AdamW finetuning: decay 0.05 on matrices, none on biases/norms, warmup + cosine"
    return side_by_side(title, net, inputs, labels, optimizers, steps, schedule)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonopt.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (at least 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the models and the data")
    parser.add_argument("--only", choices=["sgd", "adamw"], help="run one of the two runs")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the SGD lr decay happens halfway")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    print(f"path: {describe_path(device)}")
    print(f"torch {torch.__version__}, tritonopt {tritonopt.__version__}\n")
    runs = {"sgd": sgd_run, "adamw": adamw_run}
    results = [run(device, args.steps) for name, run in runs.items() if args.only in (None, name)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
