"""Which implementation runs an update on a given device, decided in one place.

CUDA tensors always run the compiled Triton kernels. CPU tensors run them only
when the kernels were decorated under Triton's interpreter (``TRITON_INTERPRET=1``
set before ``tritonopt`` is imported, as CI does); otherwise CPU tensors use
torch's fused SGD/Adam ops over the same tensors. ``cpu_implementation``
chooses between the two for a block of code (tests and the benchmark run both).
The public names are re-exported by ``tritonopt``: ``cpu_implementation``,
``kernels_interpreted`` and ``uses_triton``.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from triton.runtime.interpreter import InterpretedFunction

from .kernels.sgd import _sgd_kernel

KERNELS_INTERPRETED = isinstance(_sgd_kernel, InterpretedFunction)
CPU_IMPLEMENTATIONS = ("triton", "torch")
_cpu_uses_triton = KERNELS_INTERPRETED


def kernels_interpreted() -> bool:
    """True when the kernels run in Triton's interpreter (``TRITON_INTERPRET=1`` was set
    before ``import tritonopt``), so that CPU tensors can take them."""
    return KERNELS_INTERPRETED


def uses_triton(device: torch.device) -> bool:
    """True when tensors on ``device`` are updated by the Triton kernels."""
    return device.type == "cuda" or (device.type == "cpu" and _cpu_uses_triton)


@contextmanager
def cpu_implementation(name: str) -> Iterator[None]:
    """Update CPU tensors with ``"triton"`` (the interpreted kernels, which needs
    ``kernels_interpreted()``) or ``"torch"`` (torch's fused ops) inside the block;
    CUDA tensors run the compiled kernels either way."""
    global _cpu_uses_triton
    if name not in CPU_IMPLEMENTATIONS:
        raise ValueError(f"cpu_implementation: {name!r} is not one of {CPU_IMPLEMENTATIONS}")
    if name == "triton" and not KERNELS_INTERPRETED:
        raise RuntimeError(
            "cpu_implementation('triton') needs the kernels interpreted: set TRITON_INTERPRET=1 "
            "before importing tritonopt"
        )
    previous, _cpu_uses_triton = _cpu_uses_triton, name == "triton"
    try:
        yield
    finally:
        _cpu_uses_triton = previous
