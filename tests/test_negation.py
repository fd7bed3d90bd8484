"""Negating a float in a kernel: the sign of zero, on every triton CI runs and on the GPU.

triton 3.6 lowers a float ``-x`` to ``0 - x`` (interpreted and compiled: ``sub.rn``
in the PTX), so ``-(+0.0)`` is +0.0 where torch gives -0.0; 3.9 flips the sign bit.
``_elementwise.negate`` flips it on both.
"""

import pytest
import torch
import triton
import triton.language as tl
from torch.optim.sgd import _single_tensor_sgd
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from ptx_build import compiled_kernel_modules, float_arithmetic
import tritonopt
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.kernels._elementwise import negate

from conftest import DEVICE

# Whether a float ``-x`` is ``0 - x`` on each triton CI runs (checked).
MINUS_SUBTRACTS_BY_VERSION = {"3.6.0": True, "3.9.0": False}
VERSION = triton.__version__.split("+")[0]
MINUS_SUBTRACTS = MINUS_SUBTRACTS_BY_VERSION.get(VERSION)
RUNNABLE = tritonopt.kernels_interpreted() or DEVICE.type == "cuda"


@triton.jit
def _negate_kernel(x_ptr, out_ptr, n, USE_HELPER: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    if USE_HELPER:
        x = negate(x)
    else:
        x = -x
    tl.store(out_ptr + offsets, x, mask=mask)


def _values(dtype):
    special = [0.0, -0.0, 1.0, -2.5, float("inf"), float("-inf"), 1e-40, -1e-45]
    if dtype == torch.float64:
        special += [5e-324, -1e300]
    return torch.tensor(special, dtype=dtype, device=DEVICE)


def _same_bits(a, b):
    integer = torch.int64 if a.dtype == torch.float64 else torch.int32
    return torch.equal(a.view(integer), b.view(integer))


def _negated(x, use_helper):
    out = torch.empty_like(x)
    _negate_kernel[(1,)](x, out, x.numel(), USE_HELPER=use_helper, BLOCK=16)
    return out


@pytest.mark.skipif(not RUNNABLE, reason="needs runnable kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_negate_flips_the_sign_as_torch_does(dtype):
    x = _values(dtype)
    assert _same_bits(_negated(x, use_helper=True), torch.neg(x))
    nan = torch.tensor([float("nan")], dtype=dtype, device=DEVICE)
    assert _negated(nan, use_helper=True).isnan().all()


@pytest.mark.skipif(not RUNNABLE, reason="needs runnable kernels")
@pytest.mark.skipif(MINUS_SUBTRACTS is None, reason=f"triton {VERSION}'s float minus not checked")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_what_minus_does_on_this_triton(dtype):
    x = _values(dtype)
    negated = _negated(x, use_helper=False)
    assert _same_bits(negated[1:], torch.neg(x[1:])), "every value but +0.0 negates alike"
    assert _same_bits(negated[:1], torch.zeros(1, dtype=dtype, device=DEVICE) if MINUS_SUBTRACTS else torch.neg(x[:1]))


@pytest.mark.parametrize("capability", [80, 90])
def test_negate_compiles_to_a_sign_flip_not_a_subtraction(capability):
    helper = next(m for m in compiled_kernel_modules() if m.__name__.endswith("._elementwise")).negate
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(triton.knobs.runtime, "interpret", False)

        @triton.jit
        def kernel(x_ptr, BLOCK: tl.constexpr):
            offsets = tl.arange(0, BLOCK)
            tl.store(x_ptr + offsets, helper(tl.load(x_ptr + offsets)))

    for dtype, bits in (("fp32", "f32"), ("fp64", "f64")):
        source = ASTSource(kernel, {"x_ptr": f"*{dtype}", "BLOCK": "constexpr"}, constexprs={(1,): 128})
        options = {"enable_fp_fusion": False}
        ptx = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options).asm["ptx"]
        arithmetic = float_arithmetic(ptx)
        assert not any(op.startswith("sub.") for op in arithmetic), arithmetic
        assert set(arithmetic) <= {f"mul.rn.{bits}"}, arithmetic  # or a neg/xor: no arithmetic at all


@pytest.mark.skipif(not RUNNABLE, reason="needs runnable kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_sgd_maximize_keeps_the_sign_of_zero_gradients_as_torch(dtype):
    """A maximizing first momentum step stores -grad: -0.0 for a +0.0 gradient, as torch."""
    param = torch.tensor([1.0, 0.0, -0.0, 2.0], dtype=dtype, device=DEVICE)
    grad = torch.tensor([0.0, 0.0, 0.0, -0.0], dtype=dtype, device=DEVICE)
    buffer = torch.full_like(param, 7.0)
    expected_param, expected = param.clone(), [None]
    _single_tensor_sgd([expected_param], [grad.clone()], expected, None, None, lr=0.1, weight_decay=0.0,
                       momentum=0.9, dampening=0.0, nesterov=False, maximize=True, has_sparse_grad=False)
    sgd_kernels.sgd_update([param], [grad], [buffer], rows=[0], nesterov=False, maximize=True,
                           hyperparameters=[sgd_kernels.SGDHyperparameters(0.1, 0.0, 0.9, 0.0, True)])
    assert _same_bits(buffer, expected[0]), (buffer, expected[0])
    assert _same_bits(param, expected_param)
