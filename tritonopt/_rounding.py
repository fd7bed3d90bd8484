"""The rounding modes of ``tritonopt.kernels._rounding`` in torch, for the CPU path.

Same bits as the kernels: Philox4x32-10 in int64 arithmetic (each 32-bit word
held in an int64),
stochastic rounding by adding 16 random bits below bf16's mantissa, and Kahan's
split of an fp32 result into a rounded parameter and a rounded compensation.

Speed (1.4-2.5x the per-tensor version for stochastic rounding: see
bench/results/rounding/cpu-step-time.md): a launch's elements are
concatenated (indices and streams once per layout, cached with the first Philox
round, which does not depend on the step) and drawn in chunks of ``_CHUNK``, whose
int64 words stay in cache and under torch's parallel grain (32768: at 2 threads
on a loaded machine, the threads' synchronisation costs more than the work);
within a chunk the rounds run in place.
"""

from collections.abc import Sequence
from functools import lru_cache

import torch

from .kernels._rounding import KAHAN, PHILOX_ROUNDS, STOCHASTIC

_WORD = 0xFFFFFFFF
_ROUND_A, _ROUND_B = 0xD2511F53, 0xCD9E8D57
_KEY_A, _KEY_B = 0x9E3779B9, 0xBB67AE85
_CHUNK = 32768
# The cached first round holds 32 bytes per element: launches beyond this many
# elements (128 MiB of words) recompute it at every step instead.
_CACHED_ELEMENTS = 1 << 22


def _first_round_words(index: torch.Tensor, stream: torch.Tensor | int):
    """Round one's products, which depend on the counter's index and stream only:
    ``(hi(stream * B) ^ index high, hi(index low * A), stream * B, index low * A)``;
    the low words are left unmasked (only ever XORed into a masked word)."""
    product_a = (index & _WORD).mul_(_ROUND_A)
    product_b = (torch.as_tensor(stream, dtype=torch.int64) & _WORD) * _ROUND_B
    c0 = (product_b >> 32).bitwise_and_(_WORD).bitwise_xor(index >> 32)
    c2 = (product_a >> 32).bitwise_and_(_WORD)
    return c0, c2, product_b.expand_as(c0), product_a


def _philox(first_round, position: int, seed: int) -> torch.Tensor:
    """Philox4x32-10's first word (int64 holding a uint32) from ``_first_round_words``.

    A product of two 32-bit words fills 64 bits: int64 multiplication keeps them as the
    two's-complement bit pattern (``tests/test_rounding.py`` checks the words against
    ``tl.randint``), so the high word is ``(product >> 32) & 0xFFFFFFFF``; a low word
    needs no mask where it is only XORed into a word masked afterwards.
    """
    seed &= 0xFFFFFFFFFFFFFFFF
    k0, k1 = seed & _WORD, seed >> 32
    first_c0, first_c2, c1, c3 = first_round
    c0 = first_c0 ^ k0
    c2 = first_c2 ^ ((position & _WORD) ^ k1)
    product_a, product_b = torch.empty_like(c0), torch.empty_like(c0)
    for done in range(1, PHILOX_ROUNDS):
        k0, k1 = (k0 + _KEY_A) & _WORD, (k1 + _KEY_B) & _WORD
        torch.mul(c2, _ROUND_B, out=product_b)
        if done < PHILOX_ROUNDS - 1:
            torch.mul(c0, _ROUND_A, out=product_a)
            # c2 <- hi(c0 * A) ^ c3 ^ k1, computed in c2's own storage (c2 is consumed above).
            torch.bitwise_right_shift(product_a, 32, out=c2).bitwise_xor_(c3).bitwise_xor_(k1).bitwise_and_(_WORD)
        torch.bitwise_right_shift(product_b, 32, out=c0).bitwise_xor_(c1).bitwise_xor_(k0).bitwise_and_(_WORD)
        if done == 1:
            # The first round's words are cached: from here the rounds own their buffers.
            c1, c3 = torch.empty_like(c0), torch.empty_like(c0)
        product_a, c3 = c3, product_a
        product_b, c1 = c1, product_b
    return c0


def random_bits(index: torch.Tensor, stream: int, position: int, seed: int) -> torch.Tensor:
    """Philox4x32-10's first word (int64 holding a uint32) for counters ``(index low,
    index high, stream, position)`` and key ``seed``, as ``kernels._rounding.random_bits``."""
    return _philox(_first_round_words(index, stream), position, seed)


def stochastic_round_to_bfloat16(values: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """fp32 -> bf16 as ``kernels._rounding.stochastic_round_to_bfloat16``."""
    value_bits = values.view(torch.int32).to(torch.int64).bitwise_and_(_WORD)
    rounded = (bits & 0xFFFF).add_(value_bits).bitwise_right_shift_(16)
    nan = values.isnan()
    if nan.any():
        rounded = torch.where(nan, (value_bits >> 16) | 0x40, rounded)
    return rounded.to(torch.int16).view(torch.bfloat16)


@lru_cache(maxsize=8)
def _launch_first_round(layouts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...], streams: tuple[int, ...]):
    """``_first_round_words`` of all elements of tensors laid out as ``layouts`` (shape,
    stride), in their logical order, one after the other: the same for every step. An
    element's index is its place in the tensor's dense storage order, the kernels' index."""
    indices, per_element_streams = [], []
    for (shape, stride), stream in zip(layouts, streams):
        numel = torch.Size(shape).numel()
        indices.append(torch.arange(numel, dtype=torch.int64).as_strided(shape, stride).reshape(-1))
        per_element_streams.append(torch.full((numel,), stream, dtype=torch.int64))
    return _first_round_words(torch.cat(indices), torch.cat(per_element_streams))


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
        layouts = tuple((tuple(v.shape), tuple(v.stride())) for v in computed)
        values = torch.cat([v.reshape(-1) for v in computed])
        first_round = (_launch_first_round if values.numel() <= _CACHED_ELEMENTS else _launch_first_round.__wrapped__)(
            layouts, tuple(streams)
        )
        rounded = torch.empty(values.shape, dtype=torch.bfloat16)
        for start in range(0, values.numel(), _CHUNK):
            chunk = slice(start, start + _CHUNK)
            bits = _philox(tuple(words[chunk] for words in first_round), position, seed)
            rounded[chunk] = stochastic_round_to_bfloat16(values[chunk], bits)
        pieces = rounded.split([p.numel() for p in params])
        torch._foreach_copy_(list(params), [piece.view(p.shape) for piece, p in zip(pieces, params)])
    elif mode == KAHAN:
        params, computed = list(params), list(computed)
        torch._foreach_copy_(params, computed)
        torch._foreach_sub_(computed, params)
        torch._foreach_copy_(list(compensations), computed)
    else:
        torch._foreach_copy_(list(params), list(computed))
