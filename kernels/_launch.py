"""Launch configuration shared by the elementwise optimizer kernels, in one place.

A kernel's block size and warps come from ``launch_config(device, n_elements)``,
which reads ``LAUNCH_TABLE``: rows per device key (``device_key``), chosen by the
number of elements one launch covers. ``python -m tritonopt.bench.sweep`` measures
the rows on a GPU (block sizes 512 to 4096, 2 to 8 warps) and prints the entry to
paste here; ``override_launch_config`` is how it imposes a configuration (public as
``tritonopt.kernels.override_launch_config``, with ``device_key``).
"""

import contextlib
import functools
from collections.abc import Iterator
from typing import NamedTuple

import torch
import triton.language as tl


class LaunchConfig(NamedTuple):
    block_size: int
    num_warps: int


# device key -> rows (largest n_elements the row covers, or None for any; block size; warps),
# first matching row wins. "default" serves every device without its own entry.
# An optimizer step streams each buffer once; 1024 elements per program with 4 warps
# gives every thread 8 fp32 elements (two 16-byte vectors) per buffer. Not measured yet:
# no GPU has run the sweep.
LAUNCH_TABLE: dict[str, tuple[tuple[int | None, int, int], ...]] = {
    "default": ((None, 1024, 4),),
}

_override: LaunchConfig | None = None
_lookups = 0


@functools.lru_cache(maxsize=None)
def _cuda_key(index: int) -> str:
    major, minor = torch.cuda.get_device_capability(index)
    return f"cuda:sm_{major}{minor}"


def device_key(device: torch.device) -> str:
    """``LAUNCH_TABLE``'s key for a device: ``cuda:sm_90`` (compute capability), or the device type."""
    if device.type == "cuda":
        return _cuda_key(device.index if device.index is not None else torch.cuda.current_device())
    return device.type


def table_config(key: str, n_elements: int) -> LaunchConfig:
    """The table's row for ``n_elements`` under ``key`` (``"default"`` without an entry)."""
    for largest, block_size, num_warps in LAUNCH_TABLE.get(key, LAUNCH_TABLE["default"]):
        if largest is None or n_elements <= largest:
            return LaunchConfig(block_size, num_warps)
    raise ValueError(f"LAUNCH_TABLE[{key!r}] has no row for {n_elements} elements (end it with None)")


def table_configs(key: str) -> list[LaunchConfig]:
    """Every configuration the table can choose for ``key``, in row order."""
    rows = LAUNCH_TABLE.get(key, LAUNCH_TABLE["default"])
    return list(dict.fromkeys(LaunchConfig(block_size, num_warps) for _, block_size, num_warps in rows))


def launch_config(device: torch.device, n_elements: int) -> LaunchConfig:
    """``(block_size, num_warps)`` for one launch over ``n_elements`` on ``device``."""
    global _lookups
    _lookups += 1
    if _override is not None:
        return _override
    return table_config(device_key(device), n_elements)


@contextlib.contextmanager
def override_launch_config(block_size: int, num_warps: int) -> Iterator[list[int]]:
    """Every ``launch_config`` call inside returns this configuration (for tuning: the sweep).

    Yields a one-element list that holds, on exit, how many launches asked for
    their configuration inside the block: zero means the kernels do not read it.
    """
    global _override
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"block_size must be a power of two >= 16, not {block_size}")
    previous, start = _override, _lookups
    _override = LaunchConfig(block_size, num_warps)
    count = [0]
    try:
        yield count
    finally:
        _override = previous
        count[0] = _lookups - start


_ELEMENT_TYPES = {
    torch.float32: tl.float32,
    torch.float64: tl.float64,
    torch.bfloat16: tl.bfloat16,
    torch.float16: tl.float16,
}


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
