"""The optimizer table the generic tests iterate over (torch's ``OptimizerInfo`` idea).

One ``OptimizerInfo`` per optimizer says what the tests need to know about it: its
tritonopt and torch classes, the Hypothesis space of its hyperparameters, its two
update functions (Triton kernel, torch path) and the launches that test them
against torch's for-loop update, the state keys it keeps, keyword arguments for
short parity runs, and the constructor calls torch rejects, with the exception and
message tritonopt must reproduce. The state-machine, compat, kernel, low-precision
and construction-error tests are parametrized over ``OPTIMIZERS``; adding an
optimizer is one entry here plus its kernel.
"""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import pytest
import torch
from torch.optim.adam import _single_tensor_adam
from torch.optim.sgd import _single_tensor_sgd

import tritonopt
from tritonopt import _torch_path
from tritonopt.kernels import adam as adam_kernels
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.kernels.adam import AdamHyperparameters
from tritonopt.kernels.sgd import SGDHyperparameters
from tritonopt.testing import ADAM_HYPERPARAMETERS, ADAMW_HYPERPARAMETERS, SGD_HYPERPARAMETERS, HyperparameterSpace


@dataclass(frozen=True)
class ErrorCase:
    """Constructor keyword arguments torch rejects, and how (``pytest.raises(error, match=regex)``)."""

    kwargs: dict[str, Any]
    error: type[Exception]
    regex: str


@dataclass(frozen=True)
class KernelLaunch:
    """One call of an update function: its switches, two hyperparameter rows (the
    tensors alternate between them) and the state keys it is given (others are None)."""

    id: str
    switches: dict[str, bool]
    rows: tuple[NamedTuple, NamedTuple]
    buffers: tuple[str, ...]


@dataclass(frozen=True)
class KernelCases:
    """How the kernel tests check an optimizer's update functions against torch."""

    launches: tuple[KernelLaunch, ...]
    # ``expected(param, grad, state, row, switches) -> (param, state)``: torch's for-loop
    # update of one tensor, in place on copies in the compute dtype (fp32 for 16-bit).
    expected: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]
    # state key -> map of its random float64 storage to valid values (a second moment is not negative)
    initial_state: dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]]
    # ``torch.testing.assert_close`` arguments: SGD reproduces torch's for-loop bit for bit
    tolerance: dict[str, float]
    # the state buffer the launcher takes as None when the switches need none, and rejects otherwise
    optional_buffer: str


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
    kernel_cases: KernelCases
    error_cases: tuple[ErrorCase, ...] = field(default=())

    def __repr__(self) -> str:
        return self.name


def _sgd_launches():
    """Every constexpr combination; the second row switches weight decay the other way
    and takes other lr, momentum, dampening and first_step values."""
    for weight_decay, maximize in itertools.product([0.0, 0.01], [False, True]):
        variants = [dict(momentum=0.0, dampening=0.0, nesterov=False, first_step=False)]
        for first_step, nesterov in itertools.product([False, True], [False, True]):
            variants.append(dict(momentum=0.9, dampening=0.0 if nesterov else 0.25, nesterov=nesterov, first_step=first_step))
        for v in variants:
            nesterov, momentum = v["nesterov"], v["momentum"]
            rows = (
                SGDHyperparameters(0.1, weight_decay, momentum, v["dampening"], v["first_step"]),
                SGDHyperparameters(
                    0.03, 0.02 - weight_decay, 0.0 if momentum == 0 else 0.5, 0.0 if nesterov else 0.1, not v["first_step"]
                ),
            )
            variant = {**v, "weight_decay": weight_decay, "maximize": maximize}
            yield KernelLaunch(
                id="-".join(f"{k}={variant[k]}" for k in variant),
                switches=dict(nesterov=nesterov, maximize=maximize),
                rows=rows,
                buffers=("momentum_buffer",) if momentum != 0 else (),
            )


def _sgd_expected(param, grad, state, row, switches):
    buffers = [None if row.first_step else state.get("momentum_buffer")]
    _single_tensor_sgd(
        [param], [grad], buffers, None, None, lr=row.lr, weight_decay=row.weight_decay, momentum=row.momentum,
        dampening=row.dampening, has_sparse_grad=False, **switches,
    )
    return param, {"momentum_buffer": buffers[0]} if row.momentum != 0 else {}


_ADAM_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "compensation", "step")


def _adam_launches():
    """Every constexpr combination; two rows of different values and step numbers
    (weight decay switched on in one, off in the other)."""
    for (weight_decay, decoupled), amsgrad, maximize in itertools.product(
        [(0.0, False), (0.05, False), (0.0, True), (0.05, True)], [False, True], [False, True]
    ):
        switches = dict(decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)
        yield KernelLaunch(
            id="-".join(f"{k}={v}" for k, v in dict(weight_decay=weight_decay, **switches).items()),
            switches=switches,
            rows=(
                AdamHyperparameters(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=weight_decay, step=3),
                AdamHyperparameters(lr=0.003, beta1=0.5, beta2=0.9, eps=1e-8, weight_decay=0.05 - weight_decay, step=1),
            ),
            buffers=_ADAM_STATE[:3] if amsgrad else _ADAM_STATE[:2],
        )


def _adam_expected(param, grad, state, row, switches):
    """From step ``row.step - 1``; without amsgrad its buffer is a scratch copy, not compared."""
    max_exp_avg_sq = state.get("max_exp_avg_sq", torch.empty_like(param))
    _single_tensor_adam(
        [param], [grad], [state["exp_avg"]], [state["exp_avg_sq"]], [max_exp_avg_sq],
        [torch.tensor(float(row.step - 1))], None, None, has_complex=False, capturable=False, differentiable=False,
        lr=row.lr, beta1=row.beta1, beta2=row.beta2, eps=row.eps, weight_decay=row.weight_decay, **switches,
    )
    return param, state


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
    kernel_cases=KernelCases(
        launches=tuple(_sgd_launches()),
        expected=_sgd_expected,
        initial_state={},
        tolerance={"rtol": 0.0, "atol": 0.0},
        optional_buffer="momentum_buffer",
    ),
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
    kernel_cases=KernelCases(
        launches=tuple(_adam_launches()),
        expected=_adam_expected,
        initial_state={
            "exp_avg_sq": lambda storage, generator: storage.square() * 0.1,
            "max_exp_avg_sq": lambda storage, generator: storage.square() * 0.2
            + 0.1 * (torch.rand(storage.shape, generator=generator, dtype=torch.float64) < 0.5),
        },
        tolerance={},
        optional_buffer="max_exp_avg_sq",
    ),
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


def kernel_optimizers():
    """``pytest.param(info)`` per distinct pair of update functions (AdamW's are Adam's,
    whose launches cover decoupled weight decay), named for the first optimizer using it."""
    distinct = {}
    for info in OPTIMIZERS:
        distinct.setdefault(info.kernel_update, info)
    return params(list(distinct.values()))


def kernel_params():
    """One ``pytest.param(info, launch)`` per launch of ``kernel_optimizers()``."""
    return [
        pytest.param(info, launch, id=f"{info.name.lower()}-{launch.id}")
        for (info,) in (p.values for p in kernel_optimizers())
        for launch in info.kernel_cases.launches
    ]


def error_params(optimizers=OPTIMIZERS):
    """One ``pytest.param(info, case)`` per optimizer and constructor error case."""
    return [
        pytest.param(info, case, id=f"{info.name.lower()}-{case.regex}")
        for info in optimizers
        for case in info.error_cases
    ]
