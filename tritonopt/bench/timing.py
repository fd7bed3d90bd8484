"""Clocks: one step's device and host time, the copy bandwidth, and buffer rotation.

CPU steps are timed with ``time.perf_counter`` (the work is synchronous, so host
time and step time are the same measurement). CUDA steps are timed with CUDA
events around the step, and host time is ``perf_counter`` around the ``step()``
call without synchronizing: the CPU cost of issuing the step.
"""

import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

MAX_ROTATION = 8


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(step seconds, host seconds) of one call."""
    synchronize(device)
    if device.type != "cuda":
        start = time.perf_counter()
        step()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start = time.perf_counter()
    begin.record()
    step()
    end.record()
    host = time.perf_counter() - start
    end.synchronize()
    return begin.elapsed_time(end) / 1e3, host


def copy_bandwidth(device: torch.device, elements: int, repeats: int) -> float:
    """GB/s of ``dst.copy_(src)`` over ``elements`` float32 values, counting the bytes
    read and written: the bandwidth floor a memory-bound step is compared with."""
    source = torch.rand(elements, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    seconds = statistics.median(time_step(lambda: target.copy_(source), device)[0] for _ in range(repeats))
    return 2 * source.nbytes / seconds / 1e9


def cache_bytes(device: torch.device) -> int:
    """The last-level cache a step's buffers could stay in between repeats."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).L2_cache_size
    sizes = []
    for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = entry.read_text().strip()
        multiplier = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
        sizes.append(int(text.rstrip("KMG")) * multiplier)
    return max(sizes, default=32 * 2**20)


def rotation_copies(case_bytes: int, device: torch.device) -> int:
    """Copies of a case to step in turn so that consecutive steps of one
    implementation touch at least twice the cache (at most ``MAX_ROTATION``)."""
    return max(1, min(MAX_ROTATION, math.ceil(2 * cache_bytes(device) / max(case_bytes, 1))))
