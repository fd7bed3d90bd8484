"""The tensors one test launch updates, shared by every optimizer's kernel tests.

One launch covers every size around the block and vector edges, and one tensor
that starts one element into its storage (not 16-byte aligned: the masked path
throughout). Each tensor is a view with guard elements around it in its storage,
which no update may touch.
"""

import torch

from tritonopt.kernels._blocks import VECTOR
from tritonopt.kernels._launch import launch_config

from conftest import DEVICE

BLOCK_SIZE = launch_config(DEVICE, 1).block_size  # the block of a small launch
SIZES = [0, 1, 17, VECTOR - 1, VECTOR, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 5]
UNALIGNED_SIZE = BLOCK_SIZE + 3
TAIL = 37  # guard elements after each tensor


def launch_views(dtype: torch.dtype, seed: int, transform=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(storage, view) pairs of random data; ``transform`` maps the float64 storage first."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for n, offset in [(n, 0) for n in SIZES] + [(UNALIGNED_SIZE, 1)]:
        storage = torch.randn(offset + n + TAIL, generator=generator, dtype=torch.float64)
        if transform is not None:
            storage = transform(storage, generator)
        storage = storage.to(dtype=dtype, device=DEVICE)
        pairs.append((storage, storage[offset : offset + n]))
    return pairs


def assert_guards_untouched(storage: torch.Tensor, view: torch.Tensor, before: torch.Tensor, what: str) -> None:
    start, end = view.storage_offset(), view.storage_offset() + view.numel()
    assert torch.equal(storage[:start], before[:start]), f"{what}: elements before the tensor were written"
    assert torch.equal(storage[end:], before[end:]), f"{what}: elements past the tensor were written"
