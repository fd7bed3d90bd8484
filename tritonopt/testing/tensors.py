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


# Sizes where a kernel's blocks and 16-element vectors begin and end: each power-of-two
# block size a launch may use (1,024 on CPU, larger on GPUs) with one element either side
# (4,096: a few), and odd tails after whole vectors and whole blocks.
BLOCK_BOUNDARIES = (1024, 2048, 4096)
VECTOR_ELEMENTS = 16
BOUNDARY_SIZES = (
    (17, 31, 33, 47)
    + tuple(size for block in BLOCK_BOUNDARIES[:2] for size in (block - 1, block, block + 1))
    + tuple(range(4096 - 3, 4096 + 4))
    + (1024 + 15, 2048 + 17, 4096 + 31, 3 * 1024 + 7)
)
# One large parameter now and then: at least 2**16 elements, with a partial vector and block.
LARGE_SIZES = (2**16 + 1, 2**16 + 1024 + 15)


def _small_shape(draw) -> tuple[int, ...]:
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    if ndim and draw(st.integers(0, 9)) == 0:
        shape = shape[:-1] + (0,)
    return shape


@st.composite
def param_specs(draw, dtypes=FLOAT_DTYPES) -> ParamSpec:
    """Shapes from 0-dim to 4-D (empty included) in every layout they allow; about one in
    four is a 1-D parameter of a block or vector boundary size (``BOUNDARY_SIZES``), and
    about one in a hundred a large one (``LARGE_SIZES``, at least 2**16 elements)."""
    # Shrinks toward 0: small shapes. The large size is a value in the middle of the range,
    # which Hypothesis draws no more often than any other (it favours the bounds).
    roll = draw(st.integers(0, 99))
    if roll == 50:
        shape = (draw(st.sampled_from(LARGE_SIZES)),)
    elif roll >= 75:
        shape = (draw(st.sampled_from(BOUNDARY_SIZES)),)
    else:
        shape = _small_shape(draw)
    ndim = len(shape)
    layouts = ["contiguous"]
    if ndim >= 2:
        layouts.append("transposed")
    if ndim == 4:
        layouts.append("channels_last")
    if ndim >= 1:
        layouts.append("strided")
    return ParamSpec(shape, draw(st.sampled_from(dtypes)), draw(st.sampled_from(layouts)))
