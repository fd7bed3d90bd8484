"""Launch configuration shared by the optimizer kernels, in one place."""

import torch
import triton.language as tl

# An optimizer step streams each buffer once; 1024 elements per program with
# 4 warps gives every thread 8 fp32 elements (two 16-byte vectors) per buffer.
BLOCK_SIZE = 1024
NUM_WARPS = 4

_ELEMENT_TYPES = {
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}


def launch_config(device: torch.device, n_elements: int) -> tuple[int, int]:
    """``(block_size, num_warps)`` for a launch over ``n_elements`` on ``device``."""
    return BLOCK_SIZE, NUM_WARPS


def triton_dtype(dtype: torch.dtype) -> tl.dtype:
    """The storage element type a kernel casts table addresses to."""
    return _ELEMENT_TYPES[dtype]


def scaling_arguments(placeholder, grad_scale, found_inf) -> tuple:
    """GradScaler's ``grad_scale`` and ``found_inf`` pointers; absent ones are
    ``placeholder`` and never read (their ``HAS_*`` flag is off)."""
    return (
        placeholder if grad_scale is None else grad_scale,
        placeholder if found_inf is None else found_inf,
    )
