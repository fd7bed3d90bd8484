"""Why the kernel tests replace the interpreter's ``tl.fma`` on triton 3.6, and that the
replacement is right.

triton 3.6's interpreter computes ``tl.fma(x, y, z)`` as numpy's ``x * y + z``,
rounding the product first; 3.9's rounds once (triton-lang/triton#11424, #11641).
Compiled kernels round once on both: ``fma.rn.f32``/``fma.rn.f64``, asserted by
``test_gpu_build.py`` under each triton CI runs. Of the 1,797 kernel tests, 212 fail
on 3.6's own fma (one ulp, float32 and float64; a few 16-bit values round the other
way) and none with ``exact_fma``: the difference is the interpreter's alone.
"""

from fractions import Fraction

import numpy as np
import pytest
import torch
import triton
from torch.optim.sgd import _single_tensor_sgd
from triton.runtime.interpreter import InterpreterBuilder

import exact_fma
import tritonopt
from tritonopt.kernels import sgd as sgd_kernels

from conftest import INTERPRETER_FMA_ROUNDS_TWICE

# What the interpreter of each triton CI runs does (checked; others: see the test below).
ROUNDS_TWICE_BY_VERSION = {"3.6.0": True, "3.9.0": False}


def _nearest_float32(exact: Fraction) -> np.float32:
    """The float32 nearest to ``exact``, ties to even: the correct rounding, by search."""
    guess = np.float32(float(exact))
    candidates = [np.nextafter(guess, np.float32(-np.inf)), guess, np.nextafter(guess, np.float32(np.inf))]
    finite = [c for c in candidates if np.isfinite(c)]
    return min(finite, key=lambda c: (abs(Fraction(float(c)) - exact), int(np.array(c).view(np.int32)) & 1))


def _hard_triples(dtype, count, seed):
    """Random triples plus ones built to make a product's rounding matter: ``z`` cancels
    the rounded product, or lands the sum on (or next to) a tie of the target dtype."""
    rng = np.random.default_rng(seed)
    bits = 24 if dtype == np.float32 else 53
    x = (rng.standard_normal(count) * 2.0 ** rng.integers(-20, 20, count)).astype(dtype)
    y = (rng.standard_normal(count) * 2.0 ** rng.integers(-20, 20, count)).astype(dtype)
    z = (rng.standard_normal(count) * 2.0 ** rng.integers(-20, 20, count)).astype(dtype)
    third = count // 3
    z[:third] = -(x[:third] * y[:third])  # cancellation: the exact result is the product's rounding error
    a = (1 + rng.integers(1, 2**10, third) * 2.0 ** -(bits // 2)).astype(dtype)
    x[third : 2 * third], y[third : 2 * third] = a, a  # a * a = 1 + ... + a tail below one ulp
    z[third : 2 * third] = (rng.integers(-4, 4, third) * 2.0 ** -(bits + 3)).astype(dtype)
    special = [(4097.0, 4097.0, 2.0**-30), (1 + 2.0**-12, 1 + 2.0**-12, -(1 + 2.0**-11)), (0.0, -1.0, 0.0),
               (-0.0, 1.0, -0.0), (1e-30, 1e-30, 0.0), (3e38, 2.0, -3e38)]
    if dtype == np.float64:
        special += [(1 + 2.0**-30, 1 + 2.0**-30, -(1 + 2.0**-29)), (1e300, 1e10, -1e308), (1e-300, 1e-300, 1e-320),
                    (np.inf, 0.0, 1.0), (np.nan, 1.0, 1.0), (1e308, 10.0, -np.inf)]
    sx, sy, sz = (np.array(column, dtype=dtype) for column in zip(*special))
    return np.concatenate([x, sx]), np.concatenate([y, sy]), np.concatenate([z, sz])


def _reference(x, y, z):
    with np.errstate(all="ignore"):
        rounded_twice = x * y + z
    if not all(np.isfinite([x, y, z])):
        return rounded_twice
    exact = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    if exact == 0:
        return rounded_twice  # the product is representable: IEEE addition's signed zero
    if x.dtype == np.float32:
        return _nearest_float32(exact)
    try:
        return np.float64(float(exact))
    except OverflowError:
        return np.float64(np.inf if exact > 0 else -np.inf)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_exact_fma_rounds_once_like_a_gpu(dtype):
    x, y, z = _hard_triples(dtype, 3000, seed=0)
    got = exact_fma.fma(x, y, z)
    assert got.dtype == dtype
    expected = np.array([_reference(*triple) for triple in zip(x, y, z)], dtype=dtype)
    same = (got.view(np.uint8).reshape(len(x), -1) == expected.view(np.uint8).reshape(len(x), -1)).all(axis=1)
    same |= np.isnan(got) & np.isnan(expected)
    assert same.all(), [(x[i], y[i], z[i], got[i], expected[i]) for i in np.nonzero(~same)[0][:5]]
    with np.errstate(all="ignore"):
        rounded_twice = x * y + z
    assert (rounded_twice != expected).sum() > 100, "the triples must tell one rounding from two"


def test_the_probe_sees_which_fma_the_interpreter_has():
    version = triton.__version__.split("+")[0]
    if version not in ROUNDS_TWICE_BY_VERSION:
        pytest.skip(f"triton {version} not checked: its interpreter rounds fma twice: {INTERPRETER_FMA_ROUNDS_TWICE}")
    assert INTERPRETER_FMA_ROUNDS_TWICE == ROUNDS_TWICE_BY_VERSION[version]
    replaced = getattr(InterpreterBuilder.create_fma, "original", None) is not None
    assert replaced == INTERPRETER_FMA_ROUNDS_TWICE, "the session replaces the fma exactly when it rounds twice"


@pytest.mark.skipif(not INTERPRETER_FMA_ROUNDS_TWICE, reason="this interpreter's fma rounds once")
@pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="needs the interpreter")
def test_the_interpreters_own_fma_alone_puts_the_sgd_kernel_one_ulp_off(monkeypatch):
    """Plain SGD, 17 float32 elements: one fma per element (``param - lr * grad``), whose
    result with the interpreter's fma is torch's two roundings, not torch's one."""
    generator = torch.Generator().manual_seed(17)
    param, grad = (torch.randn(17, generator=generator) for _ in range(2))
    expected = param.clone()
    _single_tensor_sgd([expected], [grad.clone()], [None], None, None, lr=0.1, weight_decay=0.0, momentum=0.0,
                       dampening=0.0, nesterov=False, maximize=False, has_sparse_grad=False)
    arguments = dict(rows=[0], hyperparameters=[sgd_kernels.SGDHyperparameters(0.1, 0.0, 0.0, 0.0, False)],
                     nesterov=False, maximize=False)

    with_exact_fma = param.clone()
    sgd_kernels.sgd_update([with_exact_fma], [grad.clone()], None, **arguments)
    assert torch.equal(with_exact_fma, expected)

    monkeypatch.setattr(InterpreterBuilder, "create_fma", InterpreterBuilder.create_fma.original)
    with_own_fma = param.clone()
    sgd_kernels.sgd_update([with_own_fma], [grad.clone()], None, **arguments)
    differs = with_own_fma != expected
    assert differs.any()
    rounded_twice = param + grad * torch.tensor(-0.1)  # the product rounded, then the sum
    assert torch.equal(with_own_fma, rounded_twice)
