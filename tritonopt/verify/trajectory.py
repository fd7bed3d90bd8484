"""A candidate, torch and a float64 oracle run side by side on one model's parameters.

Every run receives the same gradients: at each step the gradient of the preset's
loss at the oracle's parameters, rounded to the dtype under test, is given to the
candidate and to torch, and the same rounded values (upcast) to the oracle. The
measured errors are then those of the update arithmetic alone; gradients each
run computed from its own low-precision model would add the forward and
backward passes' rounding, and the runs' divergence, to what is measured.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.optim import Optimizer

from ..distance import Distance, distance
from .presets import Preset


@dataclass
class StepReport:
    step: int
    candidate: Distance
    torch: Distance
    candidate_vs_torch_ulp: float


def _parameters(initial: list[torch.Tensor]) -> list[torch.nn.Parameter]:
    return [torch.nn.Parameter(t.clone()) for t in initial]


def run(
    candidate: Callable[..., Optimizer],
    reference: Callable[..., Optimizer],
    preset: Preset,
    *,
    dtype: torch.dtype,
    steps: int,
    hyperparameters: dict,
    device: torch.device,
) -> list[StepReport]:
    """Step the three runs ``steps`` times; the initial values are the model's, rounded to ``dtype``."""
    oracle_model = preset.model.to(device=device, dtype=torch.float64)
    oracle_params = list(oracle_model.parameters())
    initial = [p.detach().to(dtype) for p in oracle_params]
    with torch.no_grad():
        for p, start in zip(oracle_params, initial):
            p.copy_(start)
    candidate_params, reference_params = _parameters(initial), _parameters(initial)
    runs = [
        (candidate(candidate_params, **copy.deepcopy(hyperparameters)), candidate_params),
        (reference(reference_params, **copy.deepcopy(hyperparameters)), reference_params),
        (reference(oracle_params, **copy.deepcopy(hyperparameters)), oracle_params),
    ]
    reports = []
    for step in range(1, steps + 1):
        gradients = torch.autograd.grad(preset.loss(oracle_model), oracle_params)
        for optimizer, params in runs:
            for p, gradient in zip(params, gradients):
                p.grad = gradient.to(dtype).to(p.dtype)
            optimizer.step()
        between = distance(candidate_params, reference_params).max_ulp
        reports.append(
            StepReport(
                step,
                distance(candidate_params, oracle_params),
                distance(reference_params, oracle_params),
                between,
            )
        )
    return reports
