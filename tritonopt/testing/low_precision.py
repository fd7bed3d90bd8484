"""bf16/fp16: never less accurate than the reference in that dtype.

At a step, a float64 oracle starts from the reference's state (parameters and
state cast to float64, same hyperparameters) and takes the same step with the
reference's gradients. The candidate's distance to the oracle (summed absolute
error over every 16-bit parameter and state tensor) must not exceed the
reference's. The candidate is then given the reference's state, so every step
starts from one shared state: two trajectories that round differently drift
apart at random, which would say nothing about a step.
"""

import copy
from collections.abc import Callable

import torch
from torch.optim import Optimizer

from ..distance import distance
from .assertions import LOW_PRECISION


def _pairs(first: Optimizer, second: Optimizer):
    for group, other in zip(first.param_groups, second.param_groups, strict=True):
        yield from zip(group["params"], other["params"], strict=True)


class Float64Oracle:
    """The reference's next step, taken in float64 from the reference's current state."""

    def __init__(self, factory: Callable[..., Optimizer], hyperparameters: dict, reference: Optimizer):
        self.reference = reference
        groups = [
            {"params": [torch.nn.Parameter(p.detach().double()) for p in group["params"]]}
            for group in reference.param_groups
        ]
        self.optimizer = factory(groups, **copy.deepcopy(hyperparameters))
        self.optimizer.load_state_dict(copy.deepcopy(reference.state_dict()))

    def step(self) -> None:
        """Step with the reference's current gradients (read after the reference's step, closures included)."""
        for p, oracle in _pairs(self.reference, self.optimizer):
            oracle.grad = None if p.grad is None else p.grad.detach().double()
        self.optimizer.step()

    def distance(self, optimizer: Optimizer) -> float:
        """Summed absolute error of ``optimizer``'s 16-bit parameters and state against the oracle."""
        values, exact = [], []
        for p, oracle in _pairs(optimizer, self.optimizer):
            if p.dtype not in LOW_PRECISION:
                continue
            values.append(p)
            exact.append(oracle)
            oracle_state = self.optimizer.state.get(oracle, {})
            for key, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dtype == p.dtype:
                    values.append(value)
                    exact.append(oracle_state[key])
        return distance(values, exact).total_abs


def assert_no_less_accurate(candidate: Optimizer, reference: Optimizer, oracle: Float64Oracle, context: str) -> None:
    """The candidate's 16-bit values are at least as close to the oracle as the reference's."""
    ours, theirs = oracle.distance(candidate), oracle.distance(reference)
    assert ours <= theirs, f"{context}: 16-bit error against float64 is {ours:.6g}, the reference's {theirs:.6g}"


def share_state(candidate: Optimizer, reference: Optimizer) -> None:
    """Copy the reference's 16-bit parameters and state into the candidate's, in place."""
    for cand_p, ref_p in _pairs(candidate, reference):
        if ref_p.dtype not in LOW_PRECISION:
            continue
        cand_p.detach().copy_(ref_p.detach())
        cand_state = candidate.state.get(cand_p, {})
        for key, value in reference.state.get(ref_p, {}).items():
            if isinstance(value, torch.Tensor) and value.dtype == ref_p.dtype:
                cand_state[key].copy_(value)
