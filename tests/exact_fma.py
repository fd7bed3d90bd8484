"""A correctly rounded ``tl.fma`` for Triton interpreters that round it twice.

Triton's interpreter before triton-lang/triton#11424 and #11641 (in 3.6, fixed by 3.9)
evaluates ``tl.fma(x, y, z)`` as numpy's ``x * y + z``: the product is rounded
before the addition. Compiled kernels use ``fma.rn.f32``/``fma.rn.f64`` (one
rounding; ``test_gpu_build.py`` asserts it), as torch's ``add(..., alpha=)`` does on
CPU and CUDA. So on such an interpreter, kernels that match torch bit for bit on a
GPU are one ulp off in the tests. ``install()`` replaces the interpreter's fma
with ``fma`` below, so the kernel tests check the kernels' arithmetic, not the
interpreter's; ``test_interpreter_fma.py`` shows the difference and tests ``fma``
against exact rational arithmetic.

float32: the product of two float32 values is exact in float64; the sum is then
rounded to odd in float64 (53 >= 24 + 2 bits) and once to float32, which is
correctly rounded (Boldo and Melquiond, "Emulation of FMA and correctly rounded
sums: proved algorithms using rounding to odd", IEEE Trans. Computers 57(4), 2008).
float64: the same paper's emulated FMA, RN(th + RO(tl + ul)) from an exact
product (Dekker) and an exact sum (Knuth), with exact rationals for elements
whose magnitudes leave that algorithm's safe range. Kernels upcast 16-bit values
to float32 before any fma, so no other dtype reaches it.
"""

from fractions import Fraction

import numpy as np

_SPLIT = 2.0**27 + 1


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _round_to_odd_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RO(a + b): the exact sum if representable, else its neighbour with an odd last bit."""
    s, error = _two_sum(a, b)
    even = (s.view(np.int64) & 1) == 0
    toward = np.nextafter(s, np.where(error > 0, np.inf, -np.inf))
    return np.where((error != 0) & even, toward, s)


def _fma32(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    product = x.astype(np.float64) * y.astype(np.float64)  # exact
    with np.errstate(invalid="ignore"):
        odd = _round_to_odd_sum(product, z.astype(np.float64))
    exact_inputs = np.isfinite(product) & np.isfinite(z)
    with np.errstate(over="ignore"):
        return np.where(exact_inputs, odd, product + z.astype(np.float64)).astype(np.float32)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = _SPLIT * a
    high = c - (c - a)
    return high, a - high


def _fma64(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        product_high = x * y
        x_high, x_low = _split(x)
        y_high, y_low = _split(y)
        product_low = ((x_high * y_high - product_high) + x_high * y_low + x_low * y_high) + x_low * y_low
        sum_high, sum_low = _two_sum(z, product_high)
        result = sum_high + _round_to_odd_sum(sum_low, product_low)
        # a zero result is exact (the product did not round): IEEE addition's signed zero
        result = np.where(result == 0, sum_high, result)
        magnitudes = np.stack([np.abs(x), np.abs(y), np.abs(z), np.abs(product_high)])
    # Dekker's split and the error terms stay exact well inside the exponent range.
    safe = np.all((magnitudes == 0) | ((magnitudes > 2.0**-450) & (magnitudes < 2.0**450)), axis=0)
    for index in zip(*np.nonzero(~safe)):
        result[index] = _fma_rational(x[index], y[index], z[index])
    return result


def _fma_rational(x: np.float64, y: np.float64, z: np.float64) -> np.float64:
    with np.errstate(all="ignore"):
        rounded_twice = x * y + z
    if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
        return rounded_twice
    exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    if exact == 0:
        # then x * y = -z is representable: the product did not round, and IEEE addition
        # gives the zero's sign
        return rounded_twice
    try:
        return np.float64(float(exact))  # int / int true division: correctly rounded
    except OverflowError:
        return np.float64(np.inf if exact > 0 else -np.inf)


def fma(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``x * y + z`` rounded once, for float32 and float64 arrays of one dtype."""
    x, y, z = np.broadcast_arrays(x, y, z)
    if z.dtype == np.float64:
        return _fma64(np.array(x), np.array(y), np.array(z))
    if z.dtype == np.float32:
        return _fma32(x, y, z)
    raise TypeError(f"fma: float32 or float64, not {z.dtype}")


def interpreter_fma_rounds_twice() -> bool:
    """Whether this triton's interpreter computes ``tl.fma`` as ``x * y + z`` in numpy."""
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    import triton.language as tl

    def handle(value):
        return TensorHandle(np.array([value], dtype=np.float32), tl.float32)

    a = 1 + 2.0**-12  # a * a = 1 + 2^-11 + 2^-24: the last term is lost when the product rounds
    result = InterpreterBuilder().create_fma(handle(a), handle(a), handle(-(1 + 2.0**-11)))
    return float(result.data[0]) == 0.0


def install() -> None:
    """Make the interpreter's float32 and float64 ``tl.fma`` round once (see the module
    docstring); other dtypes keep the interpreter's own, which is exact for float16."""
    from triton.runtime.interpreter import InterpreterBuilder, TensorHandle

    original = InterpreterBuilder.create_fma

    def create_fma(self, x, y, z):
        if z.data.dtype not in (np.float32, np.float64):
            return original(self, x, y, z)
        return TensorHandle(fma(x.data, y.data, z.data), z.dtype.scalar)

    create_fma.original = original
    InterpreterBuilder.create_fma = create_fma
