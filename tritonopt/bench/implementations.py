"""The step implementations compared side by side, each built on its own copy of a case.

tritonopt runs the path its backend picks for the device (compiled Triton kernels
on CUDA; on CPU torch's fused op, or foreach ops, over the parameters' own tensors,
chosen with ``tritonopt.cpu_implementation("torch")``) and, only when asked, the
Triton interpreter on CPU (``cpu_implementation("triton")``). torch runs its for-loop, foreach and fused
implementations and a ``torch.compile``d ``step`` with tensor learning rates (so a
new lr does not recompile).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

import tritonopt

from .cases import Case

# torch.compile of a step takes ~25 s for one tensor and minutes for 148 on a
# 2-core CPU (measured with torch 2.13), so a CPU compiles one case only: the
# default variant in float32 with at most this many tensors. Other rows say why.
COMPILE_MAX_TENSORS = {"cpu": 1, "cuda": 200}


@dataclass
class Instance:
    """A ready optimizer over one copy of a case, and the call that steps it."""

    optimizer: torch.optim.Optimizer
    step: Callable[[], Any]
    compile_s: float | None = None
    # called before every step, outside its timing (a new_grads case sets the next gradients)
    before_step: Callable[[], None] = lambda: None


@dataclass(frozen=True)
class Implementation:
    name: str
    is_torch: bool
    build: Callable[[Case, list[dict[str, Any]]], Instance]
    # why this implementation cannot run a case on a device, or None when it can
    unavailable: Callable[[Case, torch.device], str | None] = lambda case, device: None


def _tritonopt(cpu_implementation: str) -> Callable[[Case, list[dict[str, Any]]], Instance]:
    """``cpu_implementation``: what updates CPU tensors in this row's steps (``"torch"`` or
    ``"triton"``, the interpreted kernels); CUDA tensors run the compiled kernels either way."""

    def build(case: Case, param_groups: list[dict[str, Any]]) -> Instance:
        optimizer = case.optimizer.tritonopt_class(param_groups, **case.hyperparameters)

        def step() -> None:
            # Inside the timed call: rows of both CPU implementations alternate within a repeat.
            with tritonopt.cpu_implementation(cpu_implementation):
                optimizer.step()

        return Instance(optimizer, step)

    return build


def _torch(**flags: bool) -> Callable[[Case, list[dict[str, Any]]], Instance]:
    def build(case: Case, param_groups: list[dict[str, Any]]) -> Instance:
        optimizer = case.optimizer.torch_class(param_groups, **case.hyperparameters, **flags)
        return Instance(optimizer, optimizer.step)

    return build


def _compiled(case: Case, param_groups: list[dict[str, Any]]) -> Instance:
    """``torch.compile(optimizer.step)``; the first two steps (initial state, then the
    steady state) compile, and their time is reported as ``compile_s``."""
    hyperparameters = dict(case.hyperparameters)
    device = param_groups[0]["params"][0].device
    hyperparameters["lr"] = torch.tensor(hyperparameters["lr"], device=device)
    for group in param_groups:
        if "lr" in group:
            group["lr"] = torch.tensor(group["lr"], device=device)
    optimizer = case.optimizer.torch_class(param_groups, **hyperparameters)
    step = torch.compile(optimizer.step)
    start = time.perf_counter()
    step()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return Instance(optimizer, step, compile_s=time.perf_counter() - start)


def _fused_unavailable(case: Case, device: torch.device) -> str | None:
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    if device.type not in _get_fused_kernels_supported_devices():
        return f"torch has no fused {case.optimizer.name} on {device.type}"
    return None


def _compile_unavailable(case: Case, device: torch.device) -> str | None:
    limit = COMPILE_MAX_TENSORS.get(device.type, 0)
    if case.tensors > limit:
        return f"not compiled: {case.tensors} tensors (compiling takes minutes above {limit} on {device.type})"
    default_variant = next(iter(case.optimizer.variants))
    if device.type == "cpu" and (case.variant != default_variant or case.dtype != torch.float32):
        return f"not compiled: on cpu only the float32 {default_variant} case is (~20 s each)"
    return None


def _interpreter_unavailable(case: Case, device: torch.device) -> str | None:
    if device.type != "cpu" or not tritonopt.kernels_interpreted():
        return "the interpreter runs CPU tensors, with TRITON_INTERPRET=1 set before import"
    return None


def implementations(interpreter: bool) -> list[Implementation]:
    """tritonopt's rows first, then torch's; the interpreter only when asked."""
    rows = [Implementation("tritonopt", False, _tritonopt("torch"))]
    if interpreter:
        rows.append(
            Implementation("tritonopt interpreter", False, _tritonopt("triton"), _interpreter_unavailable)
        )
    rows += [
        Implementation("torch for-loop", True, _torch(foreach=False)),
        Implementation("torch foreach", True, _torch(foreach=True)),
        Implementation("torch fused", True, _torch(fused=True), _fused_unavailable),
        Implementation("torch.compile", True, _compiled, _compile_unavailable),
    ]
    return rows


def tritonopt_path(device: torch.device) -> str:
    """What the ``tritonopt`` row runs on ``device``."""
    if device.type == "cuda":
        return "compiled Triton kernels: one launch per (device, dtype, switches) over every group"
    return (
        "the torch path: torch's fused op per hyperparameter row over the parameters' own tensors "
        "whose numel is a multiple of 16, foreach ops over the others (state in flat buffers)"
    )
