"""Train the optimizer tutorial's LeNet with tritonopt.SGD and torch.optim.SGD side by side.

Run as ``python -m tritonopt.demo [--steps N] [--seed S]``. Two identical copies
of the model see the same fixed synthetic batch (random 3x32x32 images, random
labels, cross-entropy); each copy is trained by one optimizer with the
tutorial's per-subnet learning rates, momentum and weight decay, and both
learning rates are decayed by ``param_group['lr'] *= 0.1`` halfway through.
The demo prints the per-step losses and the largest parameter difference, the
median ``step()`` times, and exits nonzero unless every parameter matches
torch's under ``torch.testing.assert_close``.

On a GPU the compiled Triton kernels run. On CPU they run in Triton's
interpreter when ``TRITON_INTERPRET=1`` is set before the import, otherwise
torch's fused SGD op runs over the same flat buffers.
"""

import argparse
import copy
import statistics
import sys
import time

import torch
from torch import nn

import tritonopt
from tritonopt import _backend


class Net(nn.Module):
    """LeNet from the tutorial: ``features`` (convolutions) and ``classifier`` (linear layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(-1, 16 * 5 * 5)
        return self.classifier(x)


def param_groups(net: Net) -> list[dict]:
    """The tutorial's layout: the features use the default lr, the classifier its own."""
    return [
        {"params": net.features.parameters()},
        {"params": net.classifier.parameters(), "lr": 1e-1},
    ]


# Moderate learning rates: trained harder, this small network is chaotic enough
# that any last-bit difference in one step (on a GPU, torch's own kernels round
# differently from its CPU for-loop) grows past assert_close's float32 tolerance
# within a few dozen steps.
HYPERPARAMETERS = {"lr": 2e-2, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": False}


def describe_path(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}): compiled Triton kernels"
    if _backend.uses_triton(device):
        return "cpu: Triton kernels in the Triton interpreter (TRITON_INTERPRET=1)"
    return (
        "cpu: torch's fused SGD op over tritonopt's flat buffers "
        "(set TRITON_INTERPRET=1 to run the Triton kernels in the interpreter)"
    )


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


def lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tritonopt.demo", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--steps", type=int, default=40, help="training steps (at least 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the model and the data")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the lr decay happens halfway")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)
    net = Net().to(device)
    reference_net = copy.deepcopy(net)
    images = torch.randn(64, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (64,), device=device)

    optimizer = tritonopt.SGD(param_groups(net), **HYPERPARAMETERS)
    reference = torch.optim.SGD(param_groups(reference_net), **HYPERPARAMETERS)

    print(f"path: {describe_path(device)}")
    print(f"torch {torch.__version__}, tritonopt {tritonopt.__version__}")
    print(optimizer)
    print()
    print(f"{'step':>4}  {'tritonopt loss':>14}  {'torch loss':>10}  {'max |param diff|':>16}")

    times: dict[str, list[float]] = {"tritonopt": [], "torch": []}
    for step in range(1, args.steps + 1):
        if step == args.steps // 2 + 1:
            before = lrs(optimizer)
            for opt in (optimizer, reference):
                for group in opt.param_groups:
                    group["lr"] *= 0.1
            print(f"---- lr decay: lrs {before} -> {lrs(optimizer)} (torch: {lrs(reference)})")
        losses = []
        for name, model, opt, set_to_none in (
            # set_to_none=False: tritonopt's grads stay in its flat buffer and
            # backward accumulates into them, so no gradient is copied at step().
            ("tritonopt", net, optimizer, False),
            ("torch", reference_net, reference, True),
        ):
            opt.zero_grad(set_to_none=set_to_none)
            loss = nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            losses.append(loss.item())
        difference = max_difference(net, reference_net)
        print(f"{step:>4}  {losses[0]:>14.6f}  {losses[1]:>10.6f}  {difference:>16.3e}")

    print()
    for name, samples in times.items():
        print(f"median step() time, {name:>9}: {statistics.median(samples) * 1e3:8.3f} ms")
    print(f"final max |param diff|: {max_difference(net, reference_net):.3e}")
    named = zip(net.named_parameters(), reference_net.parameters())
    try:
        for (name, param), expected in named:
            torch.testing.assert_close(param, expected, msg=lambda m, name=name: f"{name}: {m}")
    except AssertionError as error:
        print(f"FAIL: tritonopt.SGD diverged from torch.optim.SGD\n{error}")
        return 1
    print(f"OK: all {len(list(net.parameters()))} parameters match torch.optim.SGD (assert_close)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
