"""SGD with momentum: one launch over many tensors, driven by a block table."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ._blocks import BlockTable, buffer_pointer, hyperparameter_rows, is_vector_block, load_block, scalar_pointer
from ._elementwise import hyperparameter, load_upcast, store_rounded
from ._launch import launch_config, scaling_arguments, triton_dtype
from ._rounding import kahan_buffers, load_param, random_stream_columns, rounding_mode, store_param


class SGDHyperparameters(NamedTuple):
    """One row of an SGD launch: a param group's values, and whether its buffers start now.

    In a capturable launch ``lr`` and ``weight_decay`` may be tensors (copied into the
    table on the device) and ``first_step`` is unused: each tensor's step count says it."""

    lr: float | torch.Tensor
    weight_decay: float | torch.Tensor
    momentum: float
    dampening: float
    first_step: bool
    seed: int = 0  # stochastic rounding's random stream: its key and position
    rounding_step: int = 0


def _kernel_row(row: SGDHyperparameters) -> tuple[float, ...]:
    """A hyperparameter-table row: lr, weight_decay, momentum, 1 - dampening (in
    double, as torch computes it), first_step and the random stream (seed low and
    high word, position), the columns ``_sgd_kernel`` reads."""
    return (
        float(row.lr), float(row.weight_decay), float(row.momentum), 1.0 - float(row.dampening),
        float(row.first_step), *random_stream_columns(row.seed, row.rounding_step),
    )


def _capturable_row(row: SGDHyperparameters) -> tuple[tuple[float, ...], list[tuple[int, torch.Tensor]]]:
    """``_kernel_row`` for a capturable launch, and the ``(column, tensor)`` cells the
    device copies tensor ``lr`` and ``weight_decay`` into at every step (0 in the
    table), so no value is read on the host. torch's for-loop SGD uses a tensor's
    value as it is (``alpha=-lr``), as the kernel does."""
    values = (row.lr, row.weight_decay)
    cells = [(column, value) for column, value in enumerate(values) if isinstance(value, torch.Tensor)]
    floats = tuple(0.0 if isinstance(value, torch.Tensor) else float(value) for value in values)
    return (*floats, float(row.momentum), 1.0 - float(row.dampening), 0.0, *random_stream_columns(0, 0)), cells


@triton.jit
def _sgd_block(
    blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
    ELEMENT: tl.constexpr, STATE_ELEMENT: tl.constexpr, ROUNDING: tl.constexpr, HAS_MOMENTUM: tl.constexpr,
    NESTEROV: tl.constexpr, MAXIMIZE: tl.constexpr, HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr,
    CAPTURABLE: tl.constexpr, STEP_ELEMENT: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, VECTOR: tl.constexpr,
):
    row, first, offsets, mask, param_ptr, hyperparameters, param, grad = load_block(
        blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
        7, 8, ELEMENT, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, BLOCK_SIZE, VECTOR,
    )
    param = load_param(param, row, 3, first, offsets, mask, ELEMENT, ROUNDING, VECTOR)
    compute_dtype: tl.constexpr = param.dtype
    weight_decay = hyperparameter(hyperparameters + 1, compute_dtype)
    if weight_decay != 0:
        grad = tl.fma(param, weight_decay, grad)
    if HAS_MOMENTUM:
        momentum_buffer_ptr = buffer_pointer(row, 2, first, STATE_ELEMENT, VECTOR)
        momentum = hyperparameter(hyperparameters + 2, compute_dtype)
        if CAPTURABLE:  # the step count on the device, already counted: 1 on the first step
            first_step = tl.load(scalar_pointer(row, 4, STEP_ELEMENT)) == 1
        else:
            first_step = tl.load(hyperparameters + 4) != 0
        if first_step:  # the buffer starts as the gradient
            momentum_buffer = grad
        else:
            grad_weight = hyperparameter(hyperparameters + 3, compute_dtype)
            momentum_buffer = load_upcast(momentum_buffer_ptr, offsets, mask)
            momentum_buffer = tl.fma(grad, grad_weight, momentum_buffer * momentum)
        store_rounded(momentum_buffer_ptr, offsets, momentum_buffer, mask)
        if NESTEROV:
            grad = tl.fma(momentum_buffer, momentum, grad)
        else:
            grad = momentum_buffer
    lr = hyperparameter(hyperparameters, compute_dtype)
    store_param(
        param_ptr, tl.fma(grad, -lr, param), row, 3, 5, hyperparameters + 5, first, offsets, mask,
        ELEMENT, ROUNDING, VECTOR,
    )


@triton.jit
def _sgd_kernel(
    blocks_ptr,
    tensors_ptr,
    hyperparameters_ptr,
    grad_scale_ptr,
    found_inf_ptr,
    ELEMENT: tl.constexpr,
    STATE_ELEMENT: tl.constexpr,
    ROUNDING: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
    HAS_FOUND_INF: tl.constexpr,
    CAPTURABLE: tl.constexpr,
    STEP_ELEMENT: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One SGD step over one block of one tensor; the block table says which.

    Each tensor row holds the addresses of a parameter and its gradient (storage
    dtype ``ELEMENT``), its momentum buffer (when ``HAS_MOMENTUM``; dtype
    ``STATE_ELEMENT``), its compensation (``ROUNDING == KAHAN``; ``ELEMENT``), its
    step count (``STEP_ELEMENT``; with ``CAPTURABLE`` and ``HAS_MOMENTUM``, a count
    of 1 is the buffer's first step), its random stream and its hyperparameter row
    (lr, weight_decay, momentum, 1 - dampening, first_step, seed low, seed high,
    stream position as float64). The update is torch's ``_single_tensor_sgd``
    computed in fp32 (fp64 for float64) and rounded once on store, the parameter
    in ``ROUNDING``'s way (``_rounding``; with Kahan, ``param`` below is parameter
    plus compensation):

        g = grad / grad_scale                            if HAS_GRAD_SCALE
        g = -g if MAXIMIZE else g
        g = g + weight_decay * param                     if weight_decay != 0
        buf = g if first_step else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if NESTEROV else buf     if HAS_MOMENTUM
        param = param - lr * g

    Each ``a + alpha * b`` is an explicit fma, as in torch's ``add(..., alpha=)``,
    so fp32 and fp64 match torch's for-loop bit for bit. Vector blocks (16-byte
    aligned buffers, a count that is a multiple of 16) say so to the compiler,
    which then moves 16-byte vectors; other blocks are masked element by element.
    With ``HAS_FOUND_INF`` nothing is read or written when ``found_inf`` is nonzero.
    """
    if is_vector_block(blocks_ptr):
        _sgd_block(
            blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr, ELEMENT, STATE_ELEMENT,
            ROUNDING, HAS_MOMENTUM, NESTEROV, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, CAPTURABLE, STEP_ELEMENT,
            BLOCK_SIZE, True,
        )
    else:
        _sgd_block(
            blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr, ELEMENT, STATE_ELEMENT,
            ROUNDING, HAS_MOMENTUM, NESTEROV, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, CAPTURABLE, STEP_ELEMENT,
            BLOCK_SIZE, False,
        )


def sgd_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum_buffers: Sequence[torch.Tensor] | None,
    compensations: Sequence[torch.Tensor] | None = None,
    *,
    rows: Sequence[int],
    hyperparameters: Sequence[SGDHyperparameters],
    nesterov: bool,
    maximize: bool,
    rounding: str = "nearest",
    state_dtype: torch.dtype | None = None,
    streams: Sequence[int] | None = None,
    capturable: bool = False,
    steps: Sequence[torch.Tensor] | None = None,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    table: BlockTable | None = None,
) -> None:
    """Apply one SGD step in place to every tensor of ``params``, in one launch.

    ``params[i]``, ``grads[i]`` and ``momentum_buffers[i]`` are dense real tensors
    of one float dtype and one device with identical strides, updated with
    ``hyperparameters[rows[i]]``. ``momentum_buffers`` is None exactly when no row
    has momentum; a row's ``first_step`` initialises its buffers from the
    gradient. ``grad_scale`` and ``found_inf`` are GradScaler's one-element
    float32 tensors: gradients are divided by ``grad_scale`` (and left unscaled),
    and nothing changes when ``found_inf`` is nonzero. ``table`` keeps the
    device tables between calls with the same tensors. With ``capturable``,
    nothing is read on the host: tensor ``lr``/``weight_decay`` are copied into
    the table on the device, and with momentum ``steps[i]`` (a 0-dim float tensor
    on the device, already counted) says whether tensor ``i``'s buffer starts now.

    ``rounding`` says how 16-bit parameters are stored (``_rounding``):
    ``"kahan"`` needs ``compensations`` (the parameters' dtype and layout),
    ``"stochastic"`` reads each tensor's ``streams`` entry and its row's seed and
    ``rounding_step`` (not capturable: the stream position is a host value).
    ``state_dtype`` is the momentum buffers' dtype (None: the parameters').
    """
    has_momentum = momentum_buffers is not None
    if has_momentum == any(row.momentum == 0 for row in hyperparameters):
        raise ValueError("sgd_update: momentum_buffers must be given exactly when every row has momentum")
    if capturable and has_momentum and steps is None:
        raise ValueError("sgd_update: capturable with momentum needs steps")
    counted = capturable and has_momentum
    mode = rounding_mode(rounding, params[0].dtype, capturable)
    buffers = (params, grads, momentum_buffers if has_momentum else params, kahan_buffers(mode, compensations, params))
    block_size, num_warps = launch_config(params[0].device, sum(map(torch.Tensor.numel, params)))
    rows_of_table, live = hyperparameter_rows(hyperparameters, capturable, _kernel_row, _capturable_row)
    blocks, tensors, table_rows = (table or BlockTable()).update(
        buffers, rows, rows_of_table, block_size, scalars=(steps if counted else params,), live=live,
        capturable=capturable, streams=streams or [0] * len(params),
    )
    if blocks.shape[0] == 0:
        return
    _sgd_kernel[(blocks.shape[0],)](
        blocks,
        tensors,
        table_rows,
        *scaling_arguments(table_rows, grad_scale, found_inf),
        ELEMENT=triton_dtype(params[0].dtype),
        STATE_ELEMENT=triton_dtype(state_dtype or params[0].dtype),
        ROUNDING=mode,
        HAS_MOMENTUM=has_momentum,
        NESTEROV=has_momentum and nesterov,
        MAXIMIZE=maximize,
        HAS_GRAD_SCALE=grad_scale is not None,
        HAS_FOUND_INF=found_inf is not None,
        CAPTURABLE=counted,
        STEP_ELEMENT=triton_dtype(steps[0].dtype) if counted else tl.float32,
        BLOCK_SIZE=block_size,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
