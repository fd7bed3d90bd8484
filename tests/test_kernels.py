"""Kernel-level tests: every constexpr combination, dtypes, sizes around block boundaries.

Both update implementations take the same flat buffers; each is compared with
torch's ``_single_tensor_sgd`` on the same data. For bf16/fp16 the expected
result is torch's update computed in fp32 and rounded once to the storage dtype.
"""

import itertools

import pytest
import torch
import triton
import triton.language as tl
from torch.optim.sgd import _single_tensor_sgd

from tritonopt import _backend, _torch_path
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.kernels._elementwise import _round_to_bfloat16
from tritonopt.kernels._launch import launch_config

from conftest import DEVICE

BLOCK_SIZE = launch_config(DEVICE, 1).block_size  # the block of a small launch
SIZES = [0, 1, 17, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 5]
DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
TAIL = 37  # elements past the end that must stay untouched


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
    if _backend.KERNELS_INTERPRETED or DEVICE.type == "cuda":
        impls.insert(0, pytest.param(sgd_kernels.sgd_update, id="triton"))
    return impls


def _expected(param, grad, buffer, variant, lr):
    """torch's for-loop update; for 16-bit dtypes, computed in fp32 and rounded once."""
    compute = torch.float32 if param.dtype in (torch.bfloat16, torch.float16) else param.dtype
    param, grad = param.to(compute, copy=True), grad.to(compute, copy=True)
    buffers = [None if variant["first_step"] else buffer.to(compute, copy=True)]
    kwargs = {k: v for k, v in variant.items() if k != "first_step"}
    _single_tensor_sgd([param], [grad], buffers, None, None, lr=lr, has_sparse_grad=False, **kwargs)
    return param, buffers[0]


@pytest.mark.parametrize("update", _implementations())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_update_matches_torch(update, dtype, n, variant):
    generator = torch.Generator().manual_seed(n)
    param, grad, buffer = (
        torch.randn(n + TAIL, generator=generator, dtype=torch.float64).to(dtype=dtype, device=DEVICE)
        for _ in range(3)
    )
    lr = 0.1
    expected_param, expected_buffer = _expected(param[:n], grad[:n], buffer[:n], variant, lr)
    before = (param.clone(), grad.clone(), buffer.clone())
    has_momentum = variant["momentum"] != 0
    update(param[:n], grad[:n], buffer[:n] if has_momentum else None, lr=lr, **variant)

    # The Triton kernel reproduces torch's fma order exactly; torch's own fused op
    # (the torch path) differs from its for-loop in the last bit of its scalar tail.
    exact = {"rtol": 0, "atol": 0} if update is sgd_kernels.sgd_update else {}
    torch.testing.assert_close(param[:n], expected_param.to(dtype), **exact)
    if has_momentum:
        torch.testing.assert_close(buffer[:n], expected_buffer.to(dtype), **exact)
    else:
        assert torch.equal(buffer, before[2])
    assert torch.equal(grad, before[1]), "the gradient buffer is read-only"
    assert torch.equal(param[n:], before[0][n:]), "elements past n_elements were written"
    assert torch.equal(buffer[n:], before[2][n:]), "elements past n_elements were written"


@pytest.mark.skipif(not _backend.KERNELS_INTERPRETED and DEVICE.type != "cuda", reason="needs runnable kernels")
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


def test_momentum_without_buffer_is_rejected():
    t = torch.randn(4)
    with pytest.raises(ValueError, match="momentum_buffer"):
        sgd_kernels.sgd_update(t, t.clone(), None, lr=0.1, weight_decay=0.0, momentum=0.9,
                               dampening=0.0, nesterov=False, maximize=False, first_step=False)


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
