"""Kernel-level tests: every constexpr combination, dtypes, sizes around block boundaries.

Both update implementations take the same lists of tensors; each is compared with
torch's ``_single_tensor_sgd`` on the same data, tensor by tensor. For bf16/fp16 the expected
result is torch's update computed in fp32 and rounded once to the storage dtype.
"""

import itertools

import pytest
import torch
import triton
import triton.language as tl
from torch.optim.sgd import _single_tensor_sgd

import tritonopt
from tritonopt import _torch_path
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.kernels._elementwise import _round_to_bfloat16
from tritonopt.kernels.sgd import SGDHyperparameters

from conftest import DEVICE
from launch_tensors import assert_guards_untouched, launch_views

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def _variants():
    for weight_decay, maximize in itertools.product([0.0, 0.01], [False, True]):
        yield dict(momentum=0.0, dampening=0.0, nesterov=False, first_step=False, weight_decay=weight_decay, maximize=maximize)
        for first_step, nesterov in itertools.product([False, True], [False, True]):
            yield dict(
                momentum=0.9,
                dampening=0.0 if nesterov else 0.25,
                nesterov=nesterov,
                first_step=first_step,
                weight_decay=weight_decay,
                maximize=maximize,
            )


VARIANTS = list(_variants())


def _implementations():
    impls = [pytest.param(_torch_path.sgd_update, id="torch-path")]
    if tritonopt.kernels_interpreted() or DEVICE.type == "cuda":
        impls.insert(0, pytest.param(sgd_kernels.sgd_update, id="triton"))
    return impls


def _rows(variant):
    """Two rows: the variant, and the same switches with other values (weight decay
    switched on or off, another lr, momentum and dampening)."""
    first = SGDHyperparameters(0.1, variant["weight_decay"], variant["momentum"], variant["dampening"], variant["first_step"])
    other_momentum = 0.0 if variant["momentum"] == 0 else 0.5
    second = SGDHyperparameters(
        0.03, 0.02 - variant["weight_decay"], other_momentum, 0.0 if variant["nesterov"] else 0.1, not variant["first_step"]
    )
    return [first, second]


def _expected(param, grad, buffer, row, nesterov, maximize):
    """torch's for-loop update; for 16-bit dtypes, computed in fp32 and rounded once."""
    compute = torch.float32 if param.dtype in (torch.bfloat16, torch.float16) else param.dtype
    param, grad = param.to(compute, copy=True), grad.to(compute, copy=True)
    buffers = [None if row.first_step else buffer.to(compute, copy=True)]
    _single_tensor_sgd(
        [param], [grad], buffers, None, None, lr=row.lr, weight_decay=row.weight_decay, momentum=row.momentum,
        dampening=row.dampening, nesterov=nesterov, maximize=maximize, has_sparse_grad=False,
    )
    return param, buffers[0]


@pytest.mark.parametrize("update", _implementations())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_update_matches_torch(update, dtype, variant):
    params, grads, buffers = (launch_views(dtype, seed) for seed in range(3))
    rows = [index % 2 for index in range(len(params))]
    hyperparameters = _rows(variant)
    nesterov, maximize = variant["nesterov"], variant["maximize"]
    expected = [
        _expected(p, g, b, hyperparameters[row], nesterov, maximize)
        for (_, p), (_, g), (_, b), row in zip(params, grads, buffers, rows)
    ]
    before = [[storage.clone() for storage, _ in tensors] for tensors in (params, grads, buffers)]
    has_momentum = variant["momentum"] != 0
    update(
        [p for _, p in params], [g for _, g in grads], [b for _, b in buffers] if has_momentum else None,
        rows=rows, hyperparameters=hyperparameters, nesterov=nesterov, maximize=maximize,
    )

    # Both implementations reproduce torch's for-loop order exactly: the kernel with
    # explicit fmas, the torch path with the fused op on whole vectors and foreach ops elsewhere.
    for index, ((param_storage, param), (_, grad), (buffer_storage, buffer), (expected_param, expected_buffer)) in enumerate(
        zip(params, grads, buffers, expected)
    ):
        message = f"tensor {index} of {param.numel()} elements, row {rows[index]}"
        torch.testing.assert_close(param, expected_param.to(dtype), rtol=0, atol=0, msg=message)
        if has_momentum:
            torch.testing.assert_close(buffer, expected_buffer.to(dtype), rtol=0, atol=0, msg=message)
        else:
            assert torch.equal(buffer_storage, before[2][index])
        start, end = grad.storage_offset(), grad.storage_offset() + grad.numel()
        assert torch.equal(grad, before[1][index][start:end]), "the gradient is read-only"
        assert_guards_untouched(param_storage, param, before[0][index], message)
        assert_guards_untouched(buffer_storage, buffer, before[2][index], message)


@pytest.mark.skipif(not tritonopt.kernels_interpreted() and DEVICE.type != "cuda", reason="needs runnable kernels")
def test_bfloat16_rounding_is_round_to_nearest_even():
    """The explicit rounding agrees with torch's fp32 -> bf16 on ties, NaN, inf and subnormals."""

    @triton.jit
    def round_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        tl.store(out_ptr + offsets, _round_to_bfloat16(tl.load(x_ptr + offsets, mask=mask)), mask=mask)

    generator = torch.Generator().manual_seed(0)
    random_bits = torch.randint(-(2**31), 2**31 - 1, (4096,), generator=generator, dtype=torch.int64)
    special = torch.tensor(
        [0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 3.4e38, -3.4e38, 1e-40, -1e-45,
         1.00390625, 1.01171875, 1.0029296875, 255.5],  # exact ties and just above/below them
        dtype=torch.float32,
    )
    x = torch.cat([random_bits.to(torch.int32).view(torch.float32), special]).to(DEVICE)
    out = torch.empty_like(x, dtype=torch.bfloat16)
    round_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    expected = x.to(torch.bfloat16)
    nan = expected.isnan()
    assert torch.equal(out.isnan(), nan)
    assert torch.equal(out[~nan].view(torch.int16), expected[~nan].view(torch.int16))


def test_momentum_without_buffers_is_rejected():
    t = torch.randn(4)
    with pytest.raises(ValueError, match="momentum_buffers"):
        sgd_kernels.sgd_update([t], [t.clone()], None, rows=[0], hyperparameters=[SGDHyperparameters(0.1, 0.0, 0.9, 0.0, False)],
                               nesterov=False, maximize=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_torch_cpu_fused_sgd_is_still_wrong_for_16_bit(dtype):
    """Why the torch path updates 16-bit segments through fp32 copies.

    torch's CPU ``_fused_sgd_`` is far off for 16-bit tensors in this torch. When a
    torch release fixes it, this test fails, saying the fp32 detour can go.
    """
    generator = torch.Generator().manual_seed(0)
    param, grad = (torch.randn(64, generator=generator).to(dtype) for _ in range(2))
    expected = (param.float() - 0.1 * grad.float()).to(dtype)
    torch._fused_sgd_([param], [grad], [], weight_decay=0.0, momentum=0.0, lr=0.1, dampening=0.0,
                      nesterov=False, maximize=False, is_first_step=False)
    assert not torch.allclose(param.float(), expected.float(), atol=0.01)
