"""Distances between a run and the float64 oracle, in absolute terms and in ULPs of a dtype."""

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
class Error:
    """One run's distance to the oracle after a step, over every parameter."""

    max_abs: float
    max_ulp: float
    total_abs: float


def error(params: list[torch.Tensor], oracle: list[torch.Tensor], dtype: torch.dtype) -> Error:
    max_abs = max_ulp = total = 0.0
    for p, exact in zip(params, oracle, strict=True):
        difference = (p.detach().double() - exact.detach()).abs()
        max_abs = max(max_abs, difference.max().item())
        max_ulp = max(max_ulp, (difference / ulp(exact.detach(), dtype)).max().item())
        total += difference.sum().item()
    return Error(max_abs, max_ulp, total)
