"""Which implementation runs an update on a given device, decided in one place.

CUDA tensors always run the compiled Triton kernels. CPU tensors run them only
when the kernels were decorated under Triton's interpreter (``TRITON_INTERPRET=1``
set before ``tritonopt`` is imported, as CI does); otherwise CPU tensors, and
any other device, use torch's fused SGD op over the same flat buffers.
"""

import torch
from triton.runtime.interpreter import InterpretedFunction

from .kernels.sgd import _sgd_kernel

KERNELS_INTERPRETED = isinstance(_sgd_kernel, InterpretedFunction)

# Tests flip this to run the plain-torch path in an interpreter session.
CPU_USES_TRITON = KERNELS_INTERPRETED


def uses_triton(device: torch.device) -> bool:
    """True when flat buffers on ``device`` are updated by the Triton kernels."""
    return device.type == "cuda" or (device.type == "cpu" and CPU_USES_TRITON)
