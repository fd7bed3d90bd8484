"""How a kernel stores a 16-bit parameter: ``@triton.jit`` helpers for the rounding modes.

``ROUNDING`` is a kernel constexpr: ``NEAREST`` (round to nearest even, the
default), ``STOCHASTIC`` (round up with probability equal to the distance from
the lower neighbour, in ULPs: unbiased) or ``KAHAN`` (round to nearest and keep
what rounding lost in a compensation buffer of the parameter's dtype, added back
before the next update). ``tritonopt/_rounding.py`` is the same arithmetic in
torch for the CPU path, bit for bit.

The random bits of stochastic rounding are Philox4x32-10 (the rounds of
``tl.philox_impl``, what ``tl.randint`` runs) keyed by a 64-bit seed, with the counter (element
index low and high word, the tensor's stream, the stream position): reproducible
from the seed, different for every element, tensor and step.
"""

import torch
import triton
import triton.language as tl

from ._elementwise import load_upcast, round_to_nearest

NEAREST = 0
STOCHASTIC = 1
KAHAN = 2
ROUNDING_MODES = {"nearest": NEAREST, "stochastic": STOCHASTIC, "kahan": KAHAN}
PHILOX_ROUNDS = 10
# The same values as globals a compiled @triton.jit function may read.
_STOCHASTIC = tl.constexpr(STOCHASTIC)
_KAHAN = tl.constexpr(KAHAN)
_PHILOX_ROUNDS = tl.constexpr(PHILOX_ROUNDS)
# Philox4x32's multipliers and key increments (as triton.language.random has them).
_ROUND_A = tl.constexpr(0xD2511F53)
_ROUND_B = tl.constexpr(0xCD9E8D57)
_KEY_A = tl.constexpr(0x9E3779B9)
_KEY_B = tl.constexpr(0xBB67AE85)


@triton.jit
def random_bits(index, stream, position, seed_lo, seed_hi):
    """32 random bits (uint32) per element: Philox4x32-10's first word for counter
    ``(index & 0xFFFFFFFF, index >> 32, stream, position)`` and key ``(seed_lo, seed_hi)``."""
    c0 = index.to(tl.uint32)
    zero = c0 * 0
    c1 = (index >> 32).to(tl.uint32)
    c2 = zero + stream.to(tl.uint32)
    c3 = zero + position.to(tl.uint32)
    k0 = seed_lo.to(tl.uint32)
    k1 = seed_hi.to(tl.uint32)
    # tl.philox_impl's rounds, written here: a helper of triton's own is decorated once,
    # when triton is imported, and so cannot serve both an interpreted and a compiled copy.
    for _ in tl.static_range(_PHILOX_ROUNDS):
        previous_c0, previous_c2 = c0, c2
        c0 = tl.umulhi(_ROUND_B, previous_c2) ^ c1 ^ k0
        c2 = tl.umulhi(_ROUND_A, previous_c0) ^ c3 ^ k1
        c1 = tl.mul(_ROUND_B, previous_c2, sanitize_overflow=False)
        c3 = tl.mul(_ROUND_A, previous_c0, sanitize_overflow=False)
        k0 = tl.add(k0, _KEY_A, sanitize_overflow=False)
        k1 = tl.add(k1, _KEY_B, sanitize_overflow=False)
    return c0


@triton.jit
def stochastic_round_to_bfloat16(values, bits):
    """fp32 -> bf16, rounding the magnitude up with probability (dropped bits) / 2**16:
    the 16 low random bits are added below bf16's mantissa and the sum truncated.
    NaN stays a quiet NaN; values past the largest bf16 may round to infinity."""
    value_bits = values.to(tl.uint32, bitcast=True)
    rounded = (value_bits + (bits & 0xFFFF)) >> 16
    top_bits = tl.where(values != values, (value_bits >> 16) | 0x40, rounded)
    return top_bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)


@triton.jit
def load_param(param, row, compensation_column: tl.constexpr, first, offsets, mask,
               ELEMENT: tl.constexpr, ROUNDING: tl.constexpr, VECTOR: tl.constexpr):
    """The parameter as the update reads it: with ``KAHAN``, plus its compensation (exact in fp32)."""
    if ROUNDING == _KAHAN:
        compensation_ptr = tl.load(row + compensation_column).to(tl.pointer_type(ELEMENT)) + first
        if VECTOR:
            compensation_ptr = tl.multiple_of(compensation_ptr, 16)
        param = param + load_upcast(compensation_ptr, offsets, mask)
    return param


@triton.jit
def store_param(param_ptr, values, row, compensation_column: tl.constexpr, stream_column: tl.constexpr,
                random_stream, first, offsets, mask, ELEMENT: tl.constexpr, ROUNDING: tl.constexpr,
                VECTOR: tl.constexpr):
    """Store the updated parameter (compute dtype) in ``ROUNDING``'s way.

    ``random_stream`` points at the hyperparameter row's seed (low, high 32 bits)
    and stream position, float64 integers; the tensor's stream is the tensor row's
    ``stream_column``.
    """
    if ROUNDING == _STOCHASTIC:
        stream = tl.load(row + stream_column)
        seed_lo = tl.load(random_stream).to(tl.int64)
        seed_hi = tl.load(random_stream + 1).to(tl.int64)
        position = tl.load(random_stream + 2).to(tl.int64)
        bits = random_bits(first + offsets, stream, position, seed_lo, seed_hi)
        tl.store(param_ptr + offsets, stochastic_round_to_bfloat16(values, bits), mask=mask)
    elif ROUNDING == _KAHAN:
        stored = round_to_nearest(values, ELEMENT)
        compensation_ptr = tl.load(row + compensation_column).to(tl.pointer_type(ELEMENT)) + first
        if VECTOR:
            compensation_ptr = tl.multiple_of(compensation_ptr, 16)
        compensation = round_to_nearest(values - stored.to(values.dtype), ELEMENT)
        tl.store(param_ptr + offsets, stored, mask=mask)
        tl.store(compensation_ptr + offsets, compensation, mask=mask)
    else:
        tl.store(param_ptr + offsets, round_to_nearest(values, ELEMENT), mask=mask)


def rounding_mode(rounding: str, dtype, capturable: bool = False) -> int:
    """The ``ROUNDING`` constexpr for parameters of torch dtype ``dtype``: the mode only
    applies to bf16 and fp16 (fp32 and fp64 parameters are stored as computed), and
    stochastic rounding is implemented for bf16, and not capturable (its stream
    position is a host value a CUDA graph's replays would not advance)."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {tuple(ROUNDING_MODES)}, not {rounding!r}")
    if dtype not in (torch.bfloat16, torch.float16):
        return NEAREST
    if rounding == "stochastic" and dtype != torch.bfloat16:
        raise ValueError(f"rounding='stochastic' is implemented for bfloat16 parameters, not {dtype}")
    if rounding == "stochastic" and capturable:
        raise ValueError("rounding='stochastic' does not support capturable=True")
    return ROUNDING_MODES[rounding]


def random_stream_columns(seed: int, position: int) -> tuple[float, float, float]:
    """A hyperparameter row's random-stream columns: the seed's low and high 32 bits and
    the stream position (mod 2**32), as float64 integers (exact)."""
    seed &= 0xFFFFFFFFFFFFFFFF
    return float(seed & 0xFFFFFFFF), float(seed >> 32), float(position & 0xFFFFFFFF)


def kahan_buffers(mode: int, compensations, params):
    """The compensation column of a launch's tensor table: ``compensations`` under
    ``KAHAN`` (required), else ``params`` as a placeholder the kernel never reads."""
    if mode != KAHAN:
        return params
    if compensations is None:
        raise ValueError("rounding='kahan' needs a compensation buffer per parameter")
    return compensations
