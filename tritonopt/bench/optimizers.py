"""The optimizers compared, one registry entry each, and the bytes a step must move.

Minimal bytes per element of a steady-state step (every buffer read once and
written once at the storage dtype's element size ``s``; a benchmark's GB/s is
these bytes over the median step time):

- SGD with momentum: read param, grad, momentum buffer; write param, momentum
  buffer: ``5 * s`` (20 B for float32, 10 B for bfloat16). Weight decay and
  Nesterov add arithmetic, not traffic.
- SGD without momentum: read param, grad; write param: ``3 * s`` (12 B float32).
- AdamW: read param, grad, exp_avg, exp_avg_sq; write param, exp_avg,
  exp_avg_sq: ``7 * s`` (28 B float32).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import tritonopt


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer: its tritonopt and torch classes, variants and traffic per element."""

    name: str
    tritonopt_class: type[torch.optim.Optimizer] | None
    torch_class: type[torch.optim.Optimizer]
    # variant name -> hyperparameters (the first variant is the default)
    variants: dict[str, dict[str, Any]]
    # buffers moved per element for a variant's hyperparameters
    buffers_moved: Callable[[dict[str, Any]], int]
    # per-group overrides for a group of no-decay parameters (biases, norms)
    no_decay: dict[str, Any] = field(default_factory=lambda: {"weight_decay": 0.0})

    def minimal_bytes(self, hyperparameters: dict[str, Any], elements: int, dtype: torch.dtype) -> int:
        return self.buffers_moved(hyperparameters) * dtype.itemsize * elements


SGD = OptimizerEntry(
    name="SGD",
    tritonopt_class=tritonopt.SGD,
    torch_class=torch.optim.SGD,
    variants={
        "momentum+wd": {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4},
        "nesterov+wd": {"lr": 1e-3, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True},
        "plain": {"lr": 1e-3},
    },
    buffers_moved=lambda h: 5 if h.get("momentum", 0) else 3,
)

ADAMW = OptimizerEntry(
    name="AdamW",
    tritonopt_class=getattr(tritonopt, "AdamW", None),
    torch_class=torch.optim.AdamW,
    variants={"default": {"lr": 1e-3, "weight_decay": 1e-2}},
    buffers_moved=lambda h: 7,
)

OPTIMIZERS = {entry.name: entry for entry in (SGD, ADAMW) if entry.tritonopt_class is not None}
