"""Adam/AdamW update functions: every constexpr combination, dtypes, sizes around block boundaries.

Both implementations (the Triton kernel and the torch path) take the same flat
buffers; each is compared with torch's ``_single_tensor_adam`` on the same data.
For bf16/fp16 the expected result is torch's update computed in fp32 and
rounded once to the storage dtype.
"""

import itertools

import pytest
import torch
from torch.optim.adam import _single_tensor_adam

import tritonopt
from tritonopt import _torch_path
from tritonopt.kernels import adam as adam_kernels
from tritonopt.kernels.adam import AdamHyperparameters

from conftest import DEVICE
from launch_tensors import assert_guards_untouched, launch_views

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _variants():
    for (weight_decay, decoupled), amsgrad, maximize in itertools.product(
        [(0.0, False), (0.05, False), (0.0, True), (0.05, True)], [False, True], [False, True]
    ):
        yield dict(weight_decay=weight_decay, decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)


VARIANTS = list(_variants())
LR_AND_BETAS = dict(lr=0.01, beta1=0.8, beta2=0.95)


def _implementations():
    impls = [pytest.param(_torch_path.adam_update, id="torch-path")]
    if tritonopt.kernels_interpreted() or DEVICE.type == "cuda":
        impls.insert(0, pytest.param(adam_kernels.adam_update, id="triton"))
    return impls


def _second_moment(storage, generator):
    return storage.square() * 0.1


def _max_second_moment(storage, generator):
    return storage.square() * 0.2 + 0.1 * (torch.rand(storage.shape, generator=generator, dtype=torch.float64) < 0.5)


def _rows(variant):
    """Two rows of different values and step numbers (weight decay switched on or off)."""
    weight_decay = variant["weight_decay"]
    return [
        AdamHyperparameters(eps=1e-6, step=3, weight_decay=weight_decay, **LR_AND_BETAS),
        AdamHyperparameters(lr=0.003, beta1=0.5, beta2=0.9, eps=1e-8, weight_decay=0.05 - weight_decay, step=1),
    ]


def _expected(param, grad, state, row, variant):
    """torch's for-loop update from step ``row.step - 1``; 16-bit dtypes computed in fp32, rounded once."""
    compute = torch.float32 if param.dtype in (torch.bfloat16, torch.float16) else param.dtype
    param, grad, *state = (t.to(compute, copy=True) for t in (param, grad, *state))
    _single_tensor_adam(
        [param], [grad], [state[0]], [state[1]], [state[2]], [torch.tensor(float(row.step - 1))],
        None, None, has_complex=False, capturable=False, differentiable=False,
        lr=row.lr, beta1=row.beta1, beta2=row.beta2, eps=row.eps, weight_decay=row.weight_decay, **variant,
    )
    return param, state


@pytest.mark.parametrize("update", _implementations())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_update_matches_torch(update, dtype, variant):
    params, grads, exp_avgs = (launch_views(dtype, seed) for seed in range(3))
    exp_avg_sqs = launch_views(dtype, 3, _second_moment)
    max_exp_avg_sqs = launch_views(dtype, 4, _max_second_moment)
    columns = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs)
    rows = [index % 2 for index in range(len(params))]
    hyperparameters = _rows(variant)
    switches = {k: v for k, v in variant.items() if k != "weight_decay"}
    expected = [
        _expected(p, g, [s[1] for s in states], hyperparameters[row], switches)
        for (_, p), (_, g), *states, row in zip(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, rows)
    ]
    before = [[storage.clone() for storage, _ in column] for column in columns]
    views = [[view for _, view in column] for column in columns]
    update(
        *views[:4], views[4] if variant["amsgrad"] else None,
        rows=rows, hyperparameters=hyperparameters, **switches,
    )

    for index, (expected_param, expected_state) in enumerate(expected):
        message = f"tensor {index} of {views[0][index].numel()} elements, row {rows[index]}"
        torch.testing.assert_close(views[0][index], expected_param.to(dtype), msg=message)
        for key, column, value in zip(STATE, columns[2:], expected_state):
            storage, view = column[index]
            if key != "max_exp_avg_sq" or variant["amsgrad"]:
                torch.testing.assert_close(view, value.to(dtype), msg=f"{message}: {key}")
            else:
                assert torch.equal(storage, before[4][index]), "max_exp_avg_sq is only touched with amsgrad"
        grad = views[1][index]
        start, end = grad.storage_offset(), grad.storage_offset() + grad.numel()
        assert torch.equal(grad, before[1][index][start:end]), "without a grad scaler the gradient is read-only"
        for column, original in zip((params, *columns[2:]), (before[0], *before[2:])):
            assert_guards_untouched(*column[index], original[index], message)


def test_amsgrad_without_its_buffers_is_rejected():
    t = torch.randn(4)
    row = AdamHyperparameters(eps=1e-8, step=1, weight_decay=0.0, **LR_AND_BETAS)
    with pytest.raises(ValueError, match="max_exp_avg_sqs"):
        adam_kernels.adam_update([t], [t.clone()], [t.clone()], [t.abs()], None, rows=[0], hyperparameters=[row],
                                 decoupled_weight_decay=False, amsgrad=True, maximize=False)
