"""Measure one case: every implementation on its own copies of the same data, timed in turn.

After warm-up (the first step initialises state: for tritonopt, its flat state
buffers; parameters and gradients stay where they were made), each repeat steps
every implementation once, so drifting machine load touches them alike; an
implementation steps its copies in rotation when one copy would stay in cache.
Gradients are set once and stay in place, so every step is a full update of the
same cost; a ``new_grads`` case instead sets each copy's next gradient set
before every step (outside the timing), rotating through the gradients the case
was built with and a pool made before the memory window: peak memory counts one
gradient set, as in the in-place case.
"""

import gc
import itertools
import statistics
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from . import counters, timing
from .cases import Case, build_params, grad_pool
from .implementations import Implementation, Instance


@dataclass
class Row:
    """One table row: a case measured with one implementation (or why it was not)."""

    case: str
    implementation: str
    tensors: int
    elements: int
    groups: int
    minimal_bytes: int
    median_ms: float | None = None
    host_us: float | None = None
    gb_per_s: float | None = None
    percent_of_copy: float | None = None
    steady_mb: float | None = None
    peak_mb: float | None = None
    launches: int | None = None
    speedup_vs_fastest_torch: float | None = None
    compile_s: float | None = None
    skipped: str | None = None
    samples_ms: list[float] = field(default_factory=list, repr=False)


def build_instance(
    case: Case,
    implementation: Implementation,
    device: torch.device,
    warmup: int,
    pool: list[list[torch.Tensor]] | None = None,
) -> Instance:
    """A built implementation after ``warmup`` steps; a ``new_grads`` case rotates its
    own gradients and those of ``pool`` (made here when not given)."""
    param_groups = build_params(case, device)
    params = [p for group in param_groups for p in group["params"]]
    instance = implementation.build(case, param_groups)
    if case.new_grads:
        instance.before_step = _rotating_grads(params, pool or grad_pool(case, device))
    for _ in range(warmup):
        instance.before_step()
        instance.step()
    timing.synchronize(device)
    return instance


def _rotating_grads(params: list[torch.Tensor], pool: list[list[torch.Tensor]]) -> Callable[[], None]:
    """Set every ``p.grad`` to the next gradient set, starting with the first of ``pool``
    after the parameters' own: the addresses change every step."""
    sets = [[p.grad for p in params], *pool]
    turn = itertools.count(1)

    def before_step() -> None:
        for param, grad in zip(params, sets[next(turn) % len(sets)]):
            param.grad = grad

    return before_step


def _build_measured(
    case: Case, implementation: Implementation, device: torch.device, warmup: int
) -> tuple[Instance, int | None]:
    pool = grad_pool(case, device) if case.new_grads else None
    if implementation.name == "torch.compile" and device.type != "cuda":
        return build_instance(case, implementation, device, warmup, pool), None  # compiling allocates: not counted
    return counters.measure_peak(lambda: build_instance(case, implementation, device, warmup, pool), device)


def run_case(
    case: Case,
    implementations: list[Implementation],
    device: torch.device,
    repeats: int,
    warmup: int,
    copy_gb_per_s: float,
) -> list[Row]:
    rows, instances = [], {}
    copies = timing.rotation_copies(case.minimal_bytes, device)
    for implementation in implementations:
        row = Row(case.name, implementation.name, case.tensors, case.elements, len(case.groups), case.minimal_bytes)
        rows.append(row)
        row.skipped = implementation.unavailable(case, device)
        if row.skipped:
            continue
        try:
            first, peak = _build_measured(case, implementation, device, max(warmup, 2))
            # one step reaches the steady state; the other copies need no more warm-up
            built = [first] + [build_instance(case, implementation, device, 1) for _ in range(copies - 1)]
        except Exception as error:  # a path torch cannot take here (e.g. no C++ compiler)
            row.skipped = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
            traceback.print_exc()
            continue
        instances[implementation.name] = built
        row.compile_s = first.compile_s
        row.peak_mb = None if peak is None else peak / 2**20
        row.steady_mb = counters.steady_bytes(first.optimizer) / 2**20
        first.before_step()
        row.launches = counters.launches_per_step(first.step, device)

    host: dict[str, list[float]] = {name: [] for name in instances}
    by_name = {row.implementation: row for row in rows}
    # As timeit does: a garbage collection over every copy's tensors would land in
    # whichever step happens to trigger it.
    gc.collect()
    gc.disable()
    try:
        for repeat in range(repeats):
            for name, built in instances.items():
                instance = built[repeat % len(built)]
                instance.before_step()
                seconds, host_seconds = timing.time_step(instance.step, device)
                by_name[name].samples_ms.append(seconds * 1e3)
                host[name].append(host_seconds)
    finally:
        gc.enable()

    for name in instances:
        row = by_name[name]
        row.median_ms = statistics.median(row.samples_ms)
        row.host_us = statistics.median(host[name]) * 1e6
        row.gb_per_s = case.minimal_bytes / (row.median_ms / 1e3) / 1e9
        row.percent_of_copy = 100 * row.gb_per_s / copy_gb_per_s
    torch_times = [by_name[i.name].median_ms for i in implementations if i.is_torch and i.name in instances]
    if torch_times:
        for name in instances:
            by_name[name].speedup_vs_fastest_torch = min(torch_times) / by_name[name].median_ms
    del instances
    gc.collect()
    return rows

