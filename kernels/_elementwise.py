"""``@triton.jit`` helpers shared by the optimizer kernels.

They keep the storage dtype at the memory boundary: loads upcast to the compute
dtype (fp32, or fp64 for float64 buffers), stores round once to the storage
dtype with round-to-nearest-even on every backend.
"""

import triton
import triton.language as tl


@triton.jit
def load_upcast(pointer, offsets, mask):
    """Load a block and convert it to the compute dtype (fp64 stays fp64)."""
    values = tl.load(pointer + offsets, mask=mask)
    if values.dtype != tl.float64:
        values = values.to(tl.float32)
    return values


@triton.jit
def hyperparameter(pointer, COMPUTE_DTYPE: tl.constexpr):
    """A float64 entry of the hyperparameter table, rounded once to the compute dtype
    (for fp32, exactly torch's ``float(value)`` rounding of a Python float)."""
    return tl.load(pointer).to(COMPUTE_DTYPE)


@triton.jit
def _round_to_bfloat16(values):
    """fp32 -> bf16 with round-to-nearest-even, NaN kept NaN.

    The interpreter's ``.to(tl.bfloat16)`` truncates while compiled kernels round
    to nearest; rounding the bits here makes both backends agree with torch.
    """
    bits = values.to(tl.uint32, bitcast=True)
    rounding_bias = ((bits >> 16) & 1) + 0x7FFF
    rounded = (bits + rounding_bias) >> 16
    quiet_nan = (bits >> 16) | 0x40
    top_bits = tl.where(values != values, quiet_nan, rounded)
    return top_bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def round_to_nearest(values, STORAGE: tl.constexpr):
    """Compute-dtype values rounded to nearest even in dtype ``STORAGE`` (fp64 values
    bound for bf16 pass through fp32: a 16-bit state of a float64 parameter)."""
    if STORAGE == tl.bfloat16:
        values = _round_to_bfloat16(values.to(tl.float32))
    else:
        values = values.to(STORAGE)
    return values


@triton.jit
def store_rounded(pointer, offsets, values, mask):
    """Store compute-dtype values into a buffer of any float dtype, rounding once."""
    tl.store(pointer + offsets, round_to_nearest(values, pointer.dtype.element_ty), mask=mask)


@triton.jit
def divide(numerator, denominator):
    """IEEE division (as torch computes it): fp32 ``/`` compiles to an approximate divide."""
    if numerator.dtype == tl.float32:
        return tl.div_rn(numerator, denominator)
    return numerator / denominator


@triton.jit
def square_root(values):
    """IEEE square root: fp32 ``tl.sqrt`` compiles to an approximate one."""
    if values.dtype == tl.float32:
        return tl.sqrt_rn(values)
    return tl.sqrt(values)


@triton.jit
def active_elements(n_elements, found_inf_ptr, HAS_FOUND_INF: tl.constexpr):
    """``n_elements``, or 0 when GradScaler found inf/NaN grads: a skipped step moves no memory."""
    if HAS_FOUND_INF:
        n_elements = tl.where(tl.load(found_inf_ptr) == 0, n_elements, 0)
    return n_elements


@triton.jit
def load_grad(grad_ptr, offsets, mask, grad_scale_ptr, HAS_GRAD_SCALE: tl.constexpr):
    """The gradient in the compute dtype, unscaled in place by GradScaler's scale when given.

    torch's fused optimizers leave the unscaled gradient in ``.grad``; so does this.
    """
    grad = load_upcast(grad_ptr, offsets, mask)
    if HAS_GRAD_SCALE:
        grad = divide(grad, tl.load(grad_scale_ptr).to(grad.dtype))
        store_rounded(grad_ptr, offsets, grad, mask)
    return grad


@triton.jit
def negate(values):
    """``-values`` as torch negates: the sign flips, zeros included (-(+0.0) is -0.0).

    triton 3.6 compiles and interprets a float ``-x`` as ``0 - x``, which gives +0.0
    for +0.0 (3.9 flips the sign bit). Multiplying by -1 is exact and flips the sign
    on every triton and backend.
    """
    return values * -1.0
