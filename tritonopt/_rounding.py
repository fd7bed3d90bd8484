"""The rounding modes of ``tritonopt.kernels._rounding`` in torch, for the CPU path.

Same bits as the kernels: Philox4x32-10 in int64 arithmetic (each 32-bit word
held in an int64),
stochastic rounding by adding 16 random bits below bf16's mantissa, and Kahan's
split of an fp32 result into a rounded parameter and a rounded compensation.
"""

from collections.abc import Sequence

import torch

from .kernels._rounding import KAHAN, PHILOX_ROUNDS, STOCHASTIC

_WORD = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85


def random_bits(index: torch.Tensor, stream: int, position: int, seed: int) -> torch.Tensor:
    """Philox4x32-10's first word (int64 holding a uint32) for counters ``(index low,
    index high, stream, position)`` and key ``seed``, as ``kernels._rounding.random_bits``.

    A product of two 32-bit words fills 64 bits: int64 multiplication keeps them as the
    two's-complement bit pattern (``tests/test_rounding.py`` checks the words against
    ``tl.randint``), so the high word is ``(product >> 32) & 0xFFFFFFFF``.
    """
    seed &= 0xFFFFFFFFFFFFFFFF
    c0, c1 = index & _WORD, index >> 32
    c2 = torch.full_like(index, stream & _WORD)
    c3 = torch.full_like(index, position & _WORD)
    k0, k1 = seed & _WORD, seed >> 32
    for _ in range(PHILOX_ROUNDS):
        product_b, product_a = c2 * _ROUND_B, c0 * _ROUND_A
        c0 = (product_b >> 32).bitwise_and_(_WORD).bitwise_xor_(c1).bitwise_xor_(k0)
        c2 = (product_a >> 32).bitwise_and_(_WORD).bitwise_xor_(c3).bitwise_xor_(k1)
        c1, c3 = product_b.bitwise_and_(_WORD), product_a.bitwise_and_(_WORD)
        k0, k1 = (k0 + _KEY_A) & _WORD, (k1 + _KEY_B) & _WORD
    return c0


def stochastic_round_to_bfloat16(values: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """fp32 -> bf16 as ``kernels._rounding.stochastic_round_to_bfloat16``."""
    value_bits = values.view(torch.int32).to(torch.int64) & _WORD
    rounded = (value_bits + (bits & 0xFFFF)) >> 16
    top_bits = torch.where(values.isnan(), (value_bits >> 16) | 0x40, rounded)
    return top_bits.to(torch.int16).view(torch.bfloat16)


def _storage_indices(tensor: torch.Tensor) -> torch.Tensor:
    """Each element's index in the tensor's dense storage order (the kernels' element index)."""
    return torch.arange(tensor.numel(), dtype=torch.int64).as_strided(tensor.shape, tensor.stride())


def store_params(
    params: Sequence[torch.Tensor],
    computed: Sequence[torch.Tensor],
    *,
    mode: int,
    compensations: Sequence[torch.Tensor] | None,
    streams: Sequence[int] | None,
    seed: int,
    position: int,
) -> None:
    """Store the updated values ``computed`` (fp32/fp64, laid out as ``params``) into
    ``params`` in ``mode``'s way; Kahan also writes ``compensations``."""
    if mode == STOCHASTIC:
        for param, values, stream in zip(params, computed, streams):
            bits = random_bits(_storage_indices(values), stream, position, seed)
            param.copy_(stochastic_round_to_bfloat16(values, bits))
    elif mode == KAHAN:
        for param, compensation, values in zip(params, compensations, computed):
            param.copy_(values)
            compensation.copy_(values - param.to(values.dtype))
    else:
        torch._foreach_copy_(list(params), list(computed))
