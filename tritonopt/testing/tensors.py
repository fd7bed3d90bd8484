"""Strategies and builders for parameters and gradients.

A parameter is described by a :class:`ParamSpec` (shape, dtype, layout), drawn by
Hypothesis and printed as runnable code in a failure; its values come from a
``torch.Generator`` seeded by a drawn seed (Hypothesis does not seed torch).
"""

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

LAYOUTS = ("contiguous", "transposed", "channels_last", "strided")
FLOAT_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class ParamSpec:
    """What a parameter looks like; its values come from a generator."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    layout: str = "contiguous"


def _random(shape, dtype, generator, device):
    """Normal values, drawn in double (complex: both parts random) and rounded to ``dtype``."""
    source = torch.complex128 if dtype.is_complex else torch.float64
    return torch.randn(shape, generator=generator, dtype=source).to(dtype=dtype, device=device)


def make_tensor(spec: ParamSpec, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """A random tensor of ``spec.shape`` in ``spec.layout`` (dense permutations or a strided slice)."""
    shape = spec.shape
    if spec.layout == "transposed":
        return _random(shape[::-1], spec.dtype, generator, device).permute(*reversed(range(len(shape))))
    if spec.layout == "channels_last":
        return _random(shape, spec.dtype, generator, device).to(memory_format=torch.channels_last)
    if spec.layout == "strided":
        wide = shape[:-1] + (2 * shape[-1],)
        return _random(wide, spec.dtype, generator, device)[..., ::2]
    return _random(shape, spec.dtype, generator, device)


def random_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random values (never all zeros) with ``tensor``'s shape, dtype and device."""
    return _random(tensor.shape, tensor.dtype, generator, tensor.device)


def poisoned(grad: torch.Tensor, value: float | None) -> torch.Tensor:
    """``grad`` with its first element set to ``value`` (inf, -inf or nan); None leaves it finite."""
    if value is not None and grad.numel():
        grad[(0,) * grad.dim()] = value
    return grad


NONFINITE = (float("inf"), float("-inf"), float("nan"))


def gradient_poison(nonfinite: bool) -> st.SearchStrategy[float | None]:
    """What ``poisoned`` plants in a gradient: nothing, or inf/-inf/nan when asked for."""
    return st.none() | st.sampled_from(NONFINITE) if nonfinite else st.none()


@st.composite
def param_specs(draw, dtypes=FLOAT_DTYPES) -> ParamSpec:
    """Shapes from 0-dim to 4-D (empty included) in every layout they allow."""
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    if ndim and draw(st.integers(0, 9)) == 0:
        shape = shape[:-1] + (0,)
    layouts = ["contiguous"]
    if ndim >= 2:
        layouts.append("transposed")
    if ndim == 4:
        layouts.append("channels_last")
    if ndim >= 1:
        layouts.append("strided")
    return ParamSpec(shape, draw(st.sampled_from(dtypes)), draw(st.sampled_from(layouts)))
