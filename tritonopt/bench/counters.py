"""Kernel launches per step and memory, from torch.profiler and tensor accounting.

Launches: on CUDA, the device kernels (and memsets/copies) the profiler records
during one step; on CPU, the top-level ATen ops of one step (ops not called from
another ATen op): one per kernel-like unit of work torch dispatches.

Memory: ``steady`` is the bytes of the distinct storages behind the parameters,
their gradients and the optimizer's state tensors after warm-up. Parameters and
gradients are the caller's own tensors for every implementation (tritonopt no
longer copies them into flat buffers); tritonopt's state tensors are views of one
flat buffer per (group, device, dtype, state key), which counts once, its
alignment padding included. A ``new_grads`` case counts the gradient set the
parameters hold, not the benchmark's pool. ``peak`` is the most memory held while the
optimizer is built and takes its first two steps, counted from before the
parameters were created: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
parameters' and gradients' bytes plus the highest running total of allocations
minus frees that torch.profiler records in that window (frees of tensors
allocated before the window are not seen, so on CPU it is an upper bound).
"""

from collections.abc import Callable
from typing import Any

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def activities(device: torch.device) -> list[ProfilerActivity]:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])


def launches_per_step(step: Callable[[], object], device: torch.device) -> int:
    with profile(activities=activities(device)) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == DeviceType.CUDA)
    return sum(1 for e in events if e.name.startswith("aten::") and not _called_from_aten(e))


def _called_from_aten(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return True
        parent = parent.cpu_parent
    return False


def tensors_bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def steady_bytes(optimizer: torch.optim.Optimizer) -> int:
    tensors = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            tensors += [p] + ([p.grad] if p.grad is not None else [])
    for entry in optimizer.state.values():
        tensors += [v for v in entry.values() if isinstance(v, torch.Tensor) and v.dim() > 0]
    return tensors_bytes(tensors)


def measure_peak(build: Callable[[], Any], device: torch.device) -> tuple[Any, int]:
    """(what ``build`` returns, peak bytes above the memory held before it ran).

    On CPU, ``build`` must include creating the parameters' tensors being counted;
    see the module docstring for what each device counts.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        result = build()
        torch.cuda.synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - before
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = build()
    allocations = sorted(
        (e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
    )
    running = peak = 0
    for _, nbytes in allocations:
        running += nbytes
        peak = max(peak, running)
    return result, peak
