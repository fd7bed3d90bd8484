"""The captured columns (``--captured``): what a step costs the host when it is captured.

Per case, each way of running a capturable step gets its host microseconds per
call (``perf_counter`` around the call, no synchronization: the CPU cost of
issuing the step) and its step time (CUDA events; on the CPU the same clock):
tritonopt's ``capturable=True`` step called eagerly, the same step replayed from a
CUDA graph (``torch.cuda.graph``), torch's fused step, torch's capturable Adam
(foreach; Adam and AdamW only) and ``torch.compile(step, mode="reduce-overhead")``
of torch's capturable optimizer. Every optimizer gets a tensor lr on the device,
which a capture needs to follow a schedule. CUDA graphs need CUDA: on the CPU
those columns say so.
"""

import statistics
from collections.abc import Callable
from typing import Any

import torch

from . import timing
from .cases import Case, build_params

COLUMNS = ("tritonopt eager", "tritonopt replayed", "torch fused", "torch capturable", "reduce-overhead")
WARMUP = 3


def _optimizer(case: Case, device: torch.device, tritonopt_class: bool, **flags: Any) -> torch.optim.Optimizer:
    param_groups = build_params(case, device)
    for group in param_groups:
        group.pop("lr", None)  # one tensor lr for every group
    cls = case.optimizer.tritonopt_class if tritonopt_class else case.optimizer.torch_class
    hyperparameters = {**case.hyperparameters, "lr": torch.tensor(case.hyperparameters.get("lr", 1e-3), device=device)}
    return cls(param_groups, **hyperparameters, **flags)


def _replayed(optimizer: torch.optim.Optimizer, device: torch.device) -> Callable[[], None]:
    """``optimizer.step`` captured in a CUDA graph after warm-up steps on a side stream."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(WARMUP):
            optimizer.step()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        optimizer.step()
    return graph.replay


def _steps(case: Case, device: torch.device) -> dict[str, Callable[[], Callable[[], Any]] | str]:
    """Column -> a builder of the call to time, or why the column does not apply."""
    no_graphs = "n/a: CUDA graphs need CUDA"
    steps: dict[str, Callable[[], Callable[[], Any]] | str] = {
        "tritonopt eager": lambda: _optimizer(case, device, True, capturable=True).step,
        "tritonopt replayed": lambda: _replayed(_optimizer(case, device, True, capturable=True), device),
        "torch fused": lambda: _optimizer(case, device, False, fused=True).step,
        "torch capturable": lambda: _optimizer(case, device, False, capturable=True, foreach=True).step,
        "reduce-overhead": lambda: torch.compile(
            _optimizer(case, device, False, capturable=True).step, mode="reduce-overhead"
        ),
    }
    if case.optimizer.name not in ("Adam", "AdamW"):
        steps["torch capturable"] = f"n/a: torch's {case.optimizer.name} has no capturable step"
    if device.type != "cuda":
        steps["tritonopt replayed"] = steps["torch capturable"] = steps["reduce-overhead"] = no_graphs
    return steps


def measure(case: Case, device: torch.device, repeats: int) -> dict[str, dict[str, float] | str]:
    """Column -> ``{"host_us", "step_ms"}`` medians over ``repeats`` calls, or why not."""
    results: dict[str, dict[str, float] | str] = {}
    for column, build in _steps(case, device).items():
        if isinstance(build, str):
            results[column] = build
            continue
        try:
            step = build()
            for _ in range(WARMUP):
                step()
            samples = [timing.time_step(step, device) for _ in range(repeats)]
        except Exception as error:  # noqa: BLE001 - a column that fails says why, the others still run
            results[column] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}"
            continue
        results[column] = {
            "host_us": statistics.median(host for _, host in samples) * 1e6,
            "step_ms": statistics.median(seconds for seconds, _ in samples) * 1e3,
        }
    return results


def table(case: Case, results: dict[str, dict[str, float] | str]) -> str:
    """The case's captured columns: host us per step (step ms), or why not."""
    cells = []
    for column in COLUMNS:
        value = results[column]
        cells.append(value if isinstance(value, str) else f"{value['host_us']:.0f} us ({value['step_ms']:.3f} ms)")
    width = max(map(len, COLUMNS))
    lines = [f"captured, {case.name}: host us per step (step ms)"]
    lines += [f"  {column:<{width}}  {cell}" for column, cell in zip(COLUMNS, cells)]
    return "\n".join(lines)
