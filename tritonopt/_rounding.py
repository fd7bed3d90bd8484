"""The rounding modes of ``tritonopt.kernels._rounding`` in torch, for the CPU path.

Same bits as the kernels: Philox4x32-10 in int64 arithmetic (each 32-bit word
held in an int64, products split into 16-bit halves so nothing overflows),
stochastic rounding by adding 16 random bits below bf16's mantissa, and Kahan's
split of an fp32 result into a rounded parameter and a rounded compensation.
"""

from collections.abc import Sequence

import torch

from .kernels._rounding import KAHAN, PHILOX_ROUNDS, STOCHASTIC

_WORD = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85


def _multiply(constant: int, word: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The high and low 32-bit words of ``constant * word`` (both below 2**32)."""
    high_half = (constant >> 16) * word  # below 2**48
    low_half = (constant & 0xFFFF) * word
    high = (high_half + (low_half >> 16)) >> 16
    low = (((high_half & 0xFFFF) << 16) + low_half) & _WORD
    return high, low


def random_bits(index: torch.Tensor, stream: int, position: int, seed: int) -> torch.Tensor:
    """Philox4x32-10's first word (int64 holding a uint32) for counters ``(index low,
    index high, stream, position)`` and key ``seed``, as ``kernels._rounding.random_bits``."""
    seed &= 0xFFFFFFFFFFFFFFFF
    c0, c1 = index & _WORD, index >> 32
    c2 = torch.full_like(index, stream & _WORD)
    c3 = torch.full_like(index, position & _WORD)
    k0, k1 = seed & _WORD, seed >> 32
    for _ in range(PHILOX_ROUNDS):
        high_b, low_b = _multiply(_ROUND_B, c2)
        high_a, low_a = _multiply(_ROUND_A, c0)
        c0, c1, c2, c3 = high_b ^ c1 ^ k0, low_b, high_a ^ c3 ^ k1, low_a
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
