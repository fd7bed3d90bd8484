"""Launch configuration shared by the elementwise optimizer kernels, in one place."""

import struct

import triton

# An optimizer step streams each buffer once; 1024 elements per program with
# 4 warps gives every thread 8 fp32 elements (two 16-byte vectors) per buffer.
BLOCK_SIZE = 1024
NUM_WARPS = 4


def grid(n_elements: int) -> tuple[int]:
    """One program per ``BLOCK_SIZE`` elements."""
    return (triton.cdiv(n_elements, BLOCK_SIZE),)


def float_bits(value: float) -> int:
    """The float64 bit pattern of a hyperparameter, as a signed 64-bit integer.

    Triton passes a Python float to a kernel as fp32 (compiled and interpreted),
    which would round a float64 group's lr to 24 bits. Passed as bits through an
    ``int64`` argument excluded from specialisation, the exact double reaches the
    kernel, a new value never recompiles, and ``hyperparameter`` rounds it to the
    compute dtype there (fp32: exactly torch's ``float(value)`` rounding).
    """
    return struct.unpack("q", struct.pack("d", float(value)))[0]


def scaling_arguments(flat_grads, grad_scale, found_inf) -> tuple:
    """GradScaler's ``grad_scale`` and ``found_inf`` pointers; absent ones point at the
    gradients and are never read (their ``HAS_*`` flag is off)."""
    return (
        flat_grads if grad_scale is None else grad_scale,
        flat_grads if found_inf is None else found_inf,
    )
