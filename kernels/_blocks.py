"""Block tables: which elements of which tensors each program of a launch updates.

One launch updates tensors that live anywhere: in tritonopt's buffers, in FSDP2's
shards, in ZeRO's or DDP's buckets, in gradients autograd just allocated. The
host describes them in two int64 tables on their device:

* the tensor table, one row per tensor: the address of each of its buffers
  (parameter, gradient, state, ...), of its per-tensor scalars (a capturable
  launch's step count on the device), optionally its random stream (an integer
  that tells its stochastic rounding apart from other tensors'), and the row of
  the hyperparameter table that applies to it;
* the block table, one row per program: its tensor, first element, element
  count, and whether it takes the vector path. A tensor whose buffers all start
  on 16 bytes gets vector blocks over its first ``numel - numel % VECTOR``
  elements and one masked tail block; any other tensor gets masked blocks.

Tensors handed to a launch are dense and share their layout across buffers, so
an elementwise pass over ``numel`` elements from each address is the update.
The tables are rebuilt only when an address, a row or a size changes.

A capturable launch (``capturable=True``) may run inside a CUDA graph capture and
be replayed: its hyperparameter table is rewritten in place when only values
change (a captured launch keeps reading the same memory), hyperparameters given
as tensors are copied into their cells on the device at every update (so a
replay reads their current value), and tables uploaded during a capture keep
their host source and themselves alive, as the graph's replays read both.
"""

from collections.abc import Callable, Sequence

import torch
import triton
import triton.language as tl

from ._elementwise import active_elements, load_grad, load_upcast, negate

# Elements that a vector block's count is a multiple of: 16-byte vectors of any
# storage dtype (four fp32, eight bf16) divide it.
VECTOR = 16
BLOCK_COLUMNS = 4  # tensor row, first element, element count, vector path


@triton.jit
def is_vector_block(blocks_ptr):
    """Whether this program's block takes the vector path."""
    return tl.load(blocks_ptr + tl.program_id(0).to(tl.int64) * 4 + 3) != 0


@triton.jit
def block_of_program(blocks_ptr, tensors_ptr, TENSOR_COLUMNS: tl.constexpr, VECTOR: tl.constexpr):
    """This program's tensor row (a pointer into the tensor table), first element and count.

    Call it inside the branch on ``is_vector_block``: ``tl.multiple_of`` marks the
    operation that defines a value, so values hinted for the vector path must
    not be shared with the masked one.
    """
    block = blocks_ptr + tl.program_id(0).to(tl.int64) * 4
    row = tensors_ptr + tl.load(block) * TENSOR_COLUMNS
    count = tl.load(block + 2)
    if VECTOR:
        count = tl.multiple_of(count, 16)
    return row, tl.load(block + 1), count


@triton.jit
def buffer_pointer(row, column: tl.constexpr, first, ELEMENT: tl.constexpr, VECTOR: tl.constexpr):
    """The address in ``column`` of a tensor row, typed and advanced to element ``first``;
    on the vector path, known to the compiler to be 16-byte aligned."""
    pointer = tl.load(row + column).to(tl.pointer_type(ELEMENT)) + first
    if VECTOR:
        pointer = tl.multiple_of(pointer, 16)
    return pointer


@triton.jit
def scalar_pointer(row, column: tl.constexpr, ELEMENT: tl.constexpr):
    """The address in ``column`` of a tensor row: one per-tensor scalar of dtype ``ELEMENT``."""
    return tl.load(row + column).to(tl.pointer_type(ELEMENT))


@triton.jit
def load_block(
    blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
    TENSOR_COLUMNS: tl.constexpr, HYPERPARAMETER_COLUMNS: tl.constexpr, ELEMENT: tl.constexpr,
    MAXIMIZE: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, VECTOR: tl.constexpr,
):
    """What every optimizer's block starts from: its tensor row, first element, offsets
    and mask (empty when GradScaler found inf), the parameter's pointer, the row of the
    hyperparameter table (the tensor row's last column), and the parameter and the
    gradient (unscaled, negated when maximizing) in the compute dtype."""
    row, first, count = block_of_program(blocks_ptr, tensors_ptr, TENSOR_COLUMNS, VECTOR)
    param_ptr = buffer_pointer(row, 0, first, ELEMENT, VECTOR)
    grad_ptr = buffer_pointer(row, 1, first, ELEMENT, VECTOR)
    hyperparameters = hyperparameters_ptr + tl.load(row + TENSOR_COLUMNS - 1) * HYPERPARAMETER_COLUMNS
    offsets = tl.arange(0, BLOCK_SIZE)
    mask = offsets < active_elements(count, found_inf_ptr, HAS_FOUND_INF)
    param = load_upcast(param_ptr, offsets, mask)
    grad = load_grad(grad_ptr, offsets, mask, grad_scale_ptr, HAS_GRAD_SCALE)
    if MAXIMIZE:
        grad = negate(grad)
    return row, first, offsets, mask, param_ptr, hyperparameters, param, grad


def _addresses(columns: Sequence[Sequence[torch.Tensor]]) -> list[list[int]]:
    """Each column's addresses; a column passed twice (a placeholder) is read once."""
    known: dict[int, list[int]] = {}
    return [known.setdefault(id(column), list(map(torch.Tensor.data_ptr, column))) for column in columns]


class BlockTable:
    """The device tables of one launch, kept between steps and rebuilt only on change.

    ``update`` takes the launch's buffers (one list per table column, equal
    lengths), its per-tensor scalars (more address columns, not part of the
    vector-path alignment), optionally each tensor's random stream (a column
    before the row), each tensor's hyperparameter row, and the hyperparameter
    rows themselves (tuples of floats); ``live`` cells ``(row, column, tensor)``
    are copied from 0-dim or 1-element tensors on the device at every update. It
    returns ``(blocks, tensors, hyperparameters)`` on the tensors' device.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._layout_key: tuple | None = None
        self._rows_key: list | None = None
        self.tensors: torch.Tensor | None = None
        self.blocks: torch.Tensor | None = None
        self.hyperparameters: torch.Tensor | None = None
        self._cells: dict[tuple[int, int], torch.Tensor] = {}
        # What CUDA graphs captured: their replays read these tables (and their host sources).
        self._captured: list[torch.Tensor] = []

    def update(
        self,
        buffers: Sequence[Sequence[torch.Tensor]],
        rows: Sequence[int],
        hyperparameters: Sequence[tuple[float, ...]],
        block_size: int,
        *,
        scalars: Sequence[Sequence[torch.Tensor]] = (),
        live: Sequence[tuple[int, int, torch.Tensor]] = (),
        capturable: bool = False,
        streams: Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        device = buffers[0][0].device
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        addresses = _addresses([*buffers, *scalars])
        numels = list(map(torch.Tensor.numel, buffers[0]))
        integers = [list(rows)] if streams is None else [list(streams), list(rows)]
        key = (addresses, integers, numels, block_size, device)
        if key != self._key:
            host = torch.tensor([*addresses, *integers], dtype=torch.int64).T.contiguous()
            aligned = (host[:, : len(buffers)] % 16 == 0).all(dim=1)
            layout_key = (numels, aligned.tolist(), block_size)
            if layout_key != self._layout_key:
                self.blocks = upload(_block_rows(torch.tensor(numels), aligned, block_size), device, self._captured)
                self._layout_key = layout_key
            self.tensors = upload(host, device, self._captured)
            self._key = key
        if hyperparameters != self._rows_key:
            host = torch.tensor(hyperparameters, dtype=torch.float64)
            if capturable and self.hyperparameters is not None and self.hyperparameters.shape == host.shape:
                # In place: a captured launch keeps reading this table.
                self.hyperparameters.copy_(host.pin_memory() if device.type == "cuda" and not capturing else host, non_blocking=True)
                if capturing:
                    self._captured.append(host)
            else:
                self.hyperparameters = upload(host, device, self._captured)
                self._cells = {}
            self._rows_key = list(hyperparameters)
        for row, column, value in live:
            cell = self._cells.get((row, column))
            if cell is None:
                cell = self._cells[row, column] = self.hyperparameters[row, column]
            cell.copy_(value.reshape(()), non_blocking=True)
        if capturing:
            self._captured += [self.blocks, self.tensors, self.hyperparameters]
        return self.blocks, self.tensors, self.hyperparameters


def upload(host: torch.Tensor, device: torch.device, captured: list[torch.Tensor]) -> torch.Tensor:
    """A fresh host table on ``device``; on CUDA copied from pinned memory without a host wait.

    During a CUDA graph capture the copy becomes a node of the graph that reads
    ``host`` at every replay: ``host`` and the copy are appended to ``captured``
    (kept alive by their owner, and never written again).
    """
    if device.type != "cuda":
        return host.to(device)
    if torch.cuda.is_current_stream_capturing():
        copy = torch.empty_like(host, device=device).copy_(host, non_blocking=True)
        captured += [host, copy]
        return copy
    return host.pin_memory().to(device, non_blocking=True)


def hyperparameter_rows(
    hyperparameters: Sequence, capturable: bool, kernel_row: Callable, capturable_row: Callable
) -> tuple[list[tuple[float, ...]], list[tuple[int, int, torch.Tensor]]]:
    """A launch's hyperparameter-table rows, and the ``(row, column, tensor)`` cells the
    device copies tensor hyperparameters into at every step (capturable launches only,
    whose ``capturable_row`` returns ``(row, cells)``)."""
    if not capturable:
        return [kernel_row(row) for row in hyperparameters], []
    made = [capturable_row(row) for row in hyperparameters]
    live = [(index, column, value) for index, (_, cells) in enumerate(made) for column, value in cells]
    return [row for row, _ in made], live


def _block_rows(numels: torch.Tensor, aligned: torch.Tensor, block_size: int) -> torch.Tensor:
    """The block table for tensors of ``numels`` elements (vectorised over tensors)."""
    body = torch.where(aligned, numels - numels % VECTOR, 0)
    body_blocks = (body + block_size - 1) // block_size
    rest_blocks = (numels - body + block_size - 1) // block_size
    per_tensor = body_blocks + rest_blocks
    tensor = torch.repeat_interleave(torch.arange(numels.numel()), per_tensor)
    within = torch.arange(tensor.numel()) - torch.repeat_interleave(per_tensor.cumsum(0) - per_tensor, per_tensor)
    in_body = within < body_blocks[tensor]
    first = torch.where(in_body, within * block_size, body[tensor] + (within - body_blocks[tensor]) * block_size)
    end = torch.minimum(first + block_size, torch.where(in_body, body[tensor], numels[tensor]))
    return torch.stack([tensor, first, end - first, in_body.to(torch.int64)], dim=1).contiguous()
