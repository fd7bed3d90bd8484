"""The block table: what every program of a launch may assume about its block.

The interpreter cannot see a wrong vector-path claim (its ``tl.multiple_of`` is a
no-op and its masked loads are exact), while a GPU would read or write past a
tensor, or fault on a misaligned vector: so the table's promises are checked here,
on the host, for tensors of every size around the vector and block edges, aligned
and not.
"""

import pytest
import torch

from tritonopt.kernels._blocks import VECTOR, BlockTable

SIZES = [0, 1, 15, 16, 17, 31, 33, 511, 512, 513, 1023, 1024, 1025, 3000]


def _tensors(offsets):
    """One tensor per (size, element offset into its storage), float32."""
    return [torch.zeros(offset + n + 8)[offset : offset + n] for n in SIZES for offset in offsets]


@pytest.mark.parametrize("block_size", [512, 1024])
def test_blocks_tile_every_tensor_and_vector_blocks_keep_their_promises(block_size):
    params = _tensors(offsets=[0, 1, 4])  # 4 floats: 16-byte aligned; 1: not
    grads = _tensors(offsets=[0, 0, 0])
    rows = [i % 3 for i in range(len(params))]
    blocks, tensors, hyperparameters = BlockTable().update(
        (params, grads), rows, [(0.1,), (0.2,), (0.3,)], block_size
    )
    assert tensors.tolist() == [[p.data_ptr(), g.data_ptr(), row] for p, g, row in zip(params, grads, rows)]
    assert hyperparameters.tolist() == [[0.1], [0.2], [0.3]]
    covered = [[] for _ in params]
    for tensor, first, count, vector in blocks.tolist():
        assert 0 < count <= block_size
        covered[tensor].append((first, count))
        if vector:
            addresses = tensors[tensor, :2].tolist()
            assert all(address % 16 == 0 for address in addresses), "a vector block of an unaligned tensor"
            assert first % VECTOR == 0 and count % VECTOR == 0, (first, count)
    for index, (p, spans) in enumerate(zip(params, covered)):
        position = 0
        for first, count in spans:
            assert first == position, f"tensor {index}: a gap or an overlap at {first}"
            position += count
        assert position == p.numel(), f"tensor {index}: {position} of {p.numel()} elements covered"
    for index, p in enumerate(params):
        aligned = all(t.data_ptr() % 16 == 0 for t in (p, grads[index]))
        vector_elements = sum(count for tensor, _, count, vector in blocks.tolist() if tensor == index and vector)
        assert vector_elements == (p.numel() - p.numel() % VECTOR if aligned else 0), index


def test_tables_are_rebuilt_only_when_an_address_size_or_row_changes():
    params = [torch.zeros(100), torch.zeros(40)]
    grads = [torch.zeros(100), torch.zeros(40)]
    table = BlockTable()
    blocks, tensors, hyperparameters = table.update((params, grads), [0, 0], [(0.1,)], 1024)
    assert table.update((params, grads), [0, 0], [(0.1,)], 1024) == (blocks, tensors, hyperparameters)
    fresh_grads = [torch.zeros(100), torch.zeros(40)]  # autograd's next allocation
    _, new_tensors, same_hyperparameters = table.update((params, fresh_grads), [0, 0], [(0.1,)], 1024)
    assert new_tensors is not tensors and same_hyperparameters is hyperparameters
    assert new_tensors[:, 1].tolist() == [g.data_ptr() for g in fresh_grads]
    *_, new_hyperparameters = table.update((params, fresh_grads), [0, 0], [(0.05,)], 1024)
    assert new_hyperparameters is not hyperparameters and new_hyperparameters.tolist() == [[0.05]]
