"""Distance to a float64 oracle, in one place: absolute, summed, and in ULPs of a dtype.

Used by ``tritonopt.testing`` (the bf16/fp16 rule: summed error no larger than
the reference's), ``python -m tritonopt.verify`` (the per-step report) and the
tests. Needs only torch.
"""

from collections.abc import Iterable
from dataclasses import dataclass

import torch


def ulp(exact: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of ``dtype`` at each value of ``exact`` (float64): eps times the
    largest power of two not above |x|, and the subnormal spacing below ``tiny``."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(exact)
    power = torch.ldexp(torch.ones_like(exact), exponent - 1)  # |x| in [power, 2 * power)
    return info.eps * torch.where(exact.abs() < info.tiny, info.tiny, power)


@dataclass
class Distance:
    """How far some tensors are from the oracle's: the largest absolute error, the
    largest error in ULPs of each tensor's own dtype, and the summed absolute error."""

    max_abs: float
    max_ulp: float
    total_abs: float


def distance(values: Iterable[torch.Tensor], exact: Iterable[torch.Tensor]) -> Distance:
    """The distance of ``values`` (any float dtype) to ``exact`` (float64), pairwise.

    Equal values (the same infinity, NaN against NaN) count zero; any other NaN
    counts infinity. ULPs are those of each value's dtype at the exact value.
    """
    infinite = {"nan": float("inf"), "posinf": float("inf")}
    max_abs = max_ulp = total = 0.0
    for value, oracle in zip(values, exact, strict=True):
        value, oracle = value.detach(), oracle.detach().double()
        as_double = value.double()
        same = (as_double == oracle) | (as_double.isnan() & oracle.isnan())
        difference = (as_double - oracle).abs().masked_fill(same, 0.0).nan_to_num(**infinite)
        if difference.numel() == 0:
            continue
        in_ulps = (difference / ulp(oracle, value.dtype)).masked_fill(same, 0.0).nan_to_num(**infinite)
        max_abs = max(max_abs, difference.max().item())
        max_ulp = max(max_ulp, in_ulps.max().item())
        total += difference.sum().item()
    return Distance(max_abs, max_ulp, total)
