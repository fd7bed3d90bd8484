"""Launch configuration shared by the elementwise optimizer kernels, in one place."""

from array import array

import triton

# An optimizer step streams each buffer once; 1024 elements per program with
# 4 warps gives every thread 8 fp32 elements (two 16-byte vectors) per buffer.
BLOCK_SIZE = 1024
NUM_WARPS = 4


def grid(n_elements: int) -> tuple[int]:
    """One program per ``BLOCK_SIZE`` elements."""
    return (triton.cdiv(n_elements, BLOCK_SIZE),)


def split_hyperparameter(value: float) -> tuple[float, float]:
    """Split a hyperparameter into an fp32 head and an fp32 tail.

    Triton passes a Python float to a kernel as fp32, compiled or interpreted,
    which would round a float64 group's lr to 24 bits. Kernels computing in
    float64 rebuild the value as ``head + tail`` (48 significant bits); kernels
    computing in fp32 use the head, which is exactly the ``float(value)``
    rounding torch applies to a scalar in an fp32 op.
    """
    value = float(value)
    head = array("f", [value])[0]
    tail = array("f", [value - head])[0] if head - head == 0 else 0.0
    return head, tail
