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

from tritonopt import _backend, _torch_path
from tritonopt.kernels import adam as adam_kernels
from tritonopt.kernels._launch import launch_config

from conftest import DEVICE

BLOCK_SIZE = launch_config(DEVICE, 1).block_size  # the block of a small launch
SIZES = [0, 1, 17, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 5]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
TAIL = 37  # elements past the end that must stay untouched
STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def _variants():
    for (weight_decay, decoupled), amsgrad, maximize in itertools.product(
        [(0.0, False), (0.05, False), (0.05, True)], [False, True], [False, True]
    ):
        yield dict(weight_decay=weight_decay, decoupled_weight_decay=decoupled, amsgrad=amsgrad, maximize=maximize)


VARIANTS = list(_variants())
HYPERPARAMETERS = dict(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-6)


def _implementations():
    impls = [pytest.param(_torch_path.adam_update, id="torch-path")]
    if _backend.KERNELS_INTERPRETED or DEVICE.type == "cuda":
        impls.insert(0, pytest.param(adam_kernels.adam_update, id="triton"))
    return impls


def _buffers(n, dtype, seed):
    """param, grad and state with TAIL guard elements; second moments are non-negative."""
    generator = torch.Generator().manual_seed(seed)
    values = [torch.randn(n + TAIL, generator=generator, dtype=torch.float64) for _ in range(5)]
    values[3] = values[3].square() * 0.1
    values[4] = values[3] + values[4].square() * 0.1 * (torch.rand(n + TAIL, generator=generator) < 0.5)
    return [v.to(dtype=dtype, device=DEVICE) for v in values]


def _expected(param, grad, state, variant, step):
    """torch's for-loop update from step ``step - 1``; 16-bit dtypes computed in fp32, rounded once."""
    compute = torch.float32 if param.dtype in (torch.bfloat16, torch.float16) else param.dtype
    param, grad, *state = (t.to(compute, copy=True) for t in (param, grad, *state))
    _single_tensor_adam(
        [param], [grad], [state[0]], [state[1]], [state[2]], [torch.tensor(float(step - 1))],
        None, None, has_complex=False, capturable=False, differentiable=False,
        lr=HYPERPARAMETERS["lr"], beta1=HYPERPARAMETERS["beta1"], beta2=HYPERPARAMETERS["beta2"],
        eps=HYPERPARAMETERS["eps"], **variant,
    )
    return param, state


@pytest.mark.parametrize("update", _implementations())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_update_matches_torch(update, dtype, n, variant):
    step = 1 + n % 5
    param, grad, *state = _buffers(n, dtype, seed=n)
    expected_param, expected_state = _expected(param[:n], grad[:n], [s[:n] for s in state], variant, step)
    before = [t.clone() for t in (param, grad, *state)]
    buffers = dict(zip(STATE, (s[:n] for s in state)))
    if not variant["amsgrad"]:
        buffers.pop("max_exp_avg_sq")
    update(param[:n], grad[:n], **buffers, step=step, **HYPERPARAMETERS, **variant)

    torch.testing.assert_close(param[:n], expected_param.to(dtype))
    for key, value, expected in zip(STATE, state, expected_state):
        if key in buffers:
            torch.testing.assert_close(value[:n], expected.to(dtype), msg=key)
        else:
            assert torch.equal(value, before[4]), "max_exp_avg_sq is only touched with amsgrad"
    assert torch.equal(grad, before[1]), "without a grad scaler the gradient buffer is read-only"
    for value, original in zip((param, *state), (before[0], *before[2:])):
        assert torch.equal(value[n:], original[n:]), "elements past n_elements were written"


def test_amsgrad_without_its_buffer_is_rejected():
    t = torch.randn(4)
    with pytest.raises(ValueError, match="max_exp_avg_sq"):
        adam_kernels.adam_update(t, t.clone(), t.clone(), t.abs(), step=1, weight_decay=0.0,
                                 decoupled_weight_decay=False, amsgrad=True, maximize=False, **HYPERPARAMETERS)
