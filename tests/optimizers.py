"""The optimizer table the generic tests iterate over (torch's ``OptimizerInfo`` idea).

One ``OptimizerInfo`` per optimizer says what the tests need to know about it: its
tritonopt and torch classes, the Hypothesis space of its hyperparameters, its two
update functions (Triton kernel, torch path), the state keys it keeps, keyword
arguments for short parity runs, and the constructor calls torch rejects, with the
exception and message tritonopt must reproduce. The state-machine, compat and
construction-error tests are parametrized over ``OPTIMIZERS``; adding an optimizer
is one entry here plus its kernel.
"""

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import torch

import tritonopt
from tritonopt import _torch_path
from tritonopt.kernels import adam as adam_kernels
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.testing import ADAM_HYPERPARAMETERS, ADAMW_HYPERPARAMETERS, SGD_HYPERPARAMETERS, HyperparameterSpace


@dataclass(frozen=True)
class ErrorCase:
    """Constructor keyword arguments torch rejects, and how (``pytest.raises(error, match=regex)``)."""

    kwargs: dict[str, Any]
    error: type[Exception]
    regex: str


@dataclass(frozen=True)
class OptimizerInfo:
    """What the generic tests know about one optimizer."""

    name: str
    cls: type[torch.optim.Optimizer]
    torch_cls: type[torch.optim.Optimizer]
    hyperparameters: HyperparameterSpace
    kernel_update: Callable[..., None]
    torch_update: Callable[..., None]
    # Every per-parameter state key the optimizer may keep (amsgrad's only with amsgrad,
    # ``compensation`` only with rounding="kahan").
    state_keys: tuple[str, ...]
    # Representative keyword arguments for short parity runs: every state buffer in use.
    kwargs: dict[str, Any]
    # Other hyperparameters than ``kwargs``'s, for an optimizer whose state_dict load replaces them.
    other_kwargs: dict[str, Any]
    error_cases: tuple[ErrorCase, ...] = field(default=())

    def __repr__(self) -> str:
        return self.name


_ADAM_ERRORS = (
    ErrorCase(dict(lr=-1e-3), ValueError, "Invalid learning rate"),
    ErrorCase(dict(eps=-1e-8), ValueError, "Invalid epsilon value"),
    ErrorCase(dict(betas=(1.0, 0.999)), ValueError, "Invalid beta parameter at index 0"),
    ErrorCase(dict(betas=(0.9, -0.1)), ValueError, "Invalid beta parameter at index 1"),
    ErrorCase(dict(weight_decay=-0.1), ValueError, "Invalid weight_decay value"),
    ErrorCase(dict(betas=(torch.tensor(0.9), 0.999)), ValueError, "betas must be either both floats or both Tensors"),
    ErrorCase(
        dict(lr=torch.tensor(1e-3), foreach=True),
        ValueError,
        "lr as a Tensor is not supported for capturable=False and foreach=True",
    ),
    ErrorCase(
        dict(betas=(torch.tensor(0.9), torch.tensor(0.99)), foreach=True),
        ValueError,
        "betas\\[0\\] as a Tensor is not supported",
    ),
    ErrorCase(dict(lr=torch.tensor([1e-3, 1e-4])), ValueError, "Tensor lr must be 1-element"),
    ErrorCase(dict(foreach=True, fused=True), RuntimeError, "`fused` and `foreach` cannot be `True` together"),
)

_ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "compensation", "step")

SGD = OptimizerInfo(
    name="SGD",
    cls=tritonopt.SGD,
    torch_cls=torch.optim.SGD,
    hyperparameters=SGD_HYPERPARAMETERS,
    kernel_update=sgd_kernels.sgd_update,
    torch_update=_torch_path.sgd_update,
    state_keys=("momentum_buffer", "compensation"),
    kwargs={"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-2},
    other_kwargs={"lr": 0.5, "momentum": 0.1},
    error_cases=(
        ErrorCase(dict(lr=-0.1), ValueError, "Invalid learning rate"),
        ErrorCase(dict(momentum=-0.5), ValueError, "Invalid momentum value"),
        ErrorCase(dict(weight_decay=-1e-4), ValueError, "Invalid weight_decay value"),
        ErrorCase(dict(nesterov=True), ValueError, "Nesterov momentum requires a momentum and zero dampening"),
        ErrorCase(dict(nesterov=True, momentum=0.9, dampening=0.1), ValueError, "Nesterov momentum requires"),
        ErrorCase(dict(lr=torch.tensor([0.1, 0.2])), ValueError, "Tensor lr must be 1-element"),
        ErrorCase(dict(foreach=True, fused=True), RuntimeError, "`fused` and `foreach` cannot be `True` together"),
    ),
)

ADAM = OptimizerInfo(
    name="Adam",
    cls=tritonopt.Adam,
    torch_cls=torch.optim.Adam,
    hyperparameters=ADAM_HYPERPARAMETERS,
    kernel_update=adam_kernels.adam_update,
    torch_update=_torch_path.adam_update,
    state_keys=_ADAM_STATE,
    kwargs={"lr": 0.01, "weight_decay": 1e-2, "amsgrad": True},
    other_kwargs={"lr": 0.5, "betas": (0.5, 0.9), "amsgrad": False},
    error_cases=_ADAM_ERRORS,
)

# AdamW is Adam with decoupled weight decay: the same update functions, state and cases.
ADAMW = replace(
    ADAM, name="AdamW", cls=tritonopt.AdamW, torch_cls=torch.optim.AdamW, hyperparameters=ADAMW_HYPERPARAMETERS
)

OPTIMIZERS = [SGD, ADAM, ADAMW]


def params(optimizers=OPTIMIZERS):
    """``pytest.param``s for ``@pytest.mark.parametrize("info", ...)``, named for the optimizer."""
    return [pytest.param(info, id=info.name.lower()) for info in optimizers]


def error_params(optimizers=OPTIMIZERS):
    """One ``pytest.param(info, case)`` per optimizer and constructor error case."""
    return [
        pytest.param(info, case, id=f"{info.name.lower()}-{case.regex}")
        for info in optimizers
        for case in info.error_cases
    ]
