"""Adam and AdamW: one launch over many tensors, driven by a block table."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ._blocks import BlockTable, buffer_pointer, is_vector_block, load_block
from ._elementwise import divide, hyperparameter, load_upcast, square_root, store_rounded
from ._launch import launch_config, scaling_arguments, triton_dtype
from ._rounding import kahan_buffers, load_param, random_stream_columns, rounding_mode, store_param


class AdamHyperparameters(NamedTuple):
    """One row of an Adam launch: a param group's values and the step number its tensors take.

    ``lr`` and the betas may be 0-dim CPU tensors, as torch's optimizers accept."""

    lr: float | torch.Tensor
    beta1: float | torch.Tensor
    beta2: float | torch.Tensor
    eps: float
    weight_decay: float
    step: float
    seed: int = 0  # stochastic rounding's random stream: its key and position
    rounding_step: int = 0


def adam_scalars(row: AdamHyperparameters) -> tuple[float, float, float]:
    """``(1 - lr * weight_decay, -lr / (1 - beta1**step), sqrt(1 - beta2**step))``, computed
    as torch's for-loop Adam computes them: in double for floats, in a tensor
    hyperparameter's dtype (float32) when lr or the betas are tensors."""
    lr, beta1, beta2, step = row.lr, row.beta1, row.beta2, row.step
    neg_step_size = -(lr / (1 - beta1**step))
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    return float(1 - lr * row.weight_decay), float(neg_step_size), float(bias_correction2_sqrt)


def _kernel_row(row: AdamHyperparameters) -> tuple[float, ...]:
    """A hyperparameter-table row, the columns ``_adam_kernel`` reads: weight_decay,
    1 - lr * weight_decay, 1 - beta1, beta2, 1 - beta2, sqrt(1 - beta2**step), eps,
    -lr / (1 - beta1**step) and the random stream (seed low and high word, position)."""
    decay_factor, neg_step_size, bias_correction2_sqrt = adam_scalars(row)
    beta1, beta2 = float(row.beta1), float(row.beta2)
    return (
        float(row.weight_decay), decay_factor, 1 - beta1, beta2, 1 - beta2,
        bias_correction2_sqrt, float(row.eps), neg_step_size, *random_stream_columns(row.seed, row.rounding_step),
    )


@triton.jit
def _adam_block(
    blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
    ELEMENT: tl.constexpr, STATE_ELEMENT: tl.constexpr, ROUNDING: tl.constexpr,
    DECOUPLED_WEIGHT_DECAY: tl.constexpr, AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr, BLOCK_SIZE: tl.constexpr, VECTOR: tl.constexpr,
):
    row, first, offsets, mask, param_ptr, hyperparameters, param, grad = load_block(
        blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
        8, 11, ELEMENT, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, BLOCK_SIZE, VECTOR,
    )
    param = load_param(param, row, 5, first, offsets, mask, ELEMENT, ROUNDING, VECTOR)
    compute_dtype: tl.constexpr = param.dtype
    exp_avg_ptr = buffer_pointer(row, 2, first, STATE_ELEMENT, VECTOR)
    exp_avg_sq_ptr = buffer_pointer(row, 3, first, STATE_ELEMENT, VECTOR)
    weight_decay = hyperparameter(hyperparameters, compute_dtype)
    if weight_decay != 0:
        if DECOUPLED_WEIGHT_DECAY:
            param = param * hyperparameter(hyperparameters + 1, compute_dtype)
        else:
            grad = tl.fma(param, weight_decay, grad)

    exp_avg = load_upcast(exp_avg_ptr, offsets, mask)
    exp_avg_weight = hyperparameter(hyperparameters + 2, compute_dtype)
    near_start = tl.abs(exp_avg_weight) < 0.5
    lerp_weight = tl.where(near_start, exp_avg_weight, exp_avg_weight - 1)
    exp_avg = tl.fma(lerp_weight, grad - exp_avg, tl.where(near_start, exp_avg, grad))
    store_rounded(exp_avg_ptr, offsets, exp_avg, mask)

    exp_avg_sq = load_upcast(exp_avg_sq_ptr, offsets, mask)
    beta2 = hyperparameter(hyperparameters + 3, compute_dtype)
    grad_sq_weight = hyperparameter(hyperparameters + 4, compute_dtype)
    exp_avg_sq = exp_avg_sq * beta2 + grad_sq_weight * grad * grad
    store_rounded(exp_avg_sq_ptr, offsets, exp_avg_sq, mask)
    if AMSGRAD:
        max_exp_avg_sq_ptr = buffer_pointer(row, 4, first, STATE_ELEMENT, VECTOR)
        exp_avg_sq = tl.maximum(load_upcast(max_exp_avg_sq_ptr, offsets, mask), exp_avg_sq)
        store_rounded(max_exp_avg_sq_ptr, offsets, exp_avg_sq, mask)

    bias_correction2_sqrt = hyperparameter(hyperparameters + 5, compute_dtype)
    eps = hyperparameter(hyperparameters + 6, compute_dtype)
    denom = divide(square_root(exp_avg_sq), bias_correction2_sqrt) + eps
    neg_step_size = hyperparameter(hyperparameters + 7, compute_dtype)
    store_param(
        param_ptr, param + divide(neg_step_size * exp_avg, denom), row, 5, 6, hyperparameters + 8, first,
        offsets, mask, ELEMENT, ROUNDING, VECTOR,
    )


@triton.jit
def _adam_kernel(
    blocks_ptr,
    tensors_ptr,
    hyperparameters_ptr,
    grad_scale_ptr,
    found_inf_ptr,
    ELEMENT: tl.constexpr,
    STATE_ELEMENT: tl.constexpr,
    ROUNDING: tl.constexpr,
    DECOUPLED_WEIGHT_DECAY: tl.constexpr,
    AMSGRAD: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
    HAS_FOUND_INF: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One Adam(W) step over one block of one tensor; the block table says which.

    Each tensor row holds the addresses of a parameter and its gradient (storage
    dtype ``ELEMENT``), ``exp_avg``, ``exp_avg_sq`` and (when ``AMSGRAD``)
    ``max_exp_avg_sq`` (dtype ``STATE_ELEMENT``), its compensation (``ROUNDING ==
    KAHAN``; ``ELEMENT``), its random stream and its hyperparameter row (see
    ``_kernel_row``). The update is torch's ``_single_tensor_adam`` for tensors
    sharing one step count, computed in fp32 (fp64 for float64) and rounded once
    per buffer, the parameter in ``ROUNDING``'s way (``_rounding``; with Kahan,
    ``param`` below is parameter plus compensation):

        g = grad / grad_scale                                  if HAS_GRAD_SCALE
        g = -g if MAXIMIZE else g
        param = param * (1 - lr * weight_decay)                if DECOUPLED_WEIGHT_DECAY
        g = g + weight_decay * param                           if L2 weight decay
        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)       if AMSGRAD (used below)
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** step) + eps
        param = param - (lr / (1 - beta1 ** step)) * exp_avg / denom

    Weight decay applies where its row's ``weight_decay`` is nonzero. ``lerp``
    is ATen's two-sided form, exact at both ends. Vector blocks move 16-byte
    vectors, others are masked (see ``_sgd_kernel``). With ``HAS_FOUND_INF``
    nothing is read or written when ``found_inf`` is nonzero.
    """
    if is_vector_block(blocks_ptr):
        _adam_block(
            blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr, ELEMENT, STATE_ELEMENT,
            ROUNDING, DECOUPLED_WEIGHT_DECAY, AMSGRAD, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, BLOCK_SIZE, True,
        )
    else:
        _adam_block(
            blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr, ELEMENT, STATE_ELEMENT,
            ROUNDING, DECOUPLED_WEIGHT_DECAY, AMSGRAD, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, BLOCK_SIZE, False,
        )


def adam_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor],
    exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None,
    compensations: Sequence[torch.Tensor] | None = None,
    *,
    rows: Sequence[int],
    hyperparameters: Sequence[AdamHyperparameters],
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    rounding: str = "nearest",
    state_dtype: torch.dtype | None = None,
    streams: Sequence[int] | None = None,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    table: BlockTable | None = None,
) -> None:
    """Apply one Adam step in place to every tensor of ``params``, in one launch.

    Tensor ``i`` (its parameter, gradient and state, dense real tensors of one
    float dtype and device with identical strides) takes step number
    ``hyperparameters[rows[i]].step`` (counted from 1). ``max_exp_avg_sqs`` is
    required with ``amsgrad``. GradScaler's ``grad_scale`` and ``found_inf`` and
    ``table``, ``rounding``, ``compensations``, ``streams`` and ``state_dtype``
    (of ``exp_avgs`` and the other moments) are as in ``sgd_update``.
    """
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("adam_update: amsgrad needs max_exp_avg_sqs")
    mode = rounding_mode(rounding, params[0].dtype)
    buffers = (
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else params,
        kahan_buffers(mode, compensations, params),
    )
    block_size, num_warps = launch_config(params[0].device, sum(map(torch.Tensor.numel, params)))
    blocks, tensors, table_rows = (table or BlockTable()).update(
        buffers, rows, [_kernel_row(row) for row in hyperparameters], block_size, streams or [0] * len(params)
    )
    if blocks.shape[0] == 0:
        return
    _adam_kernel[(blocks.shape[0],)](
        blocks,
        tensors,
        table_rows,
        *scaling_arguments(table_rows, grad_scale, found_inf),
        ELEMENT=triton_dtype(params[0].dtype),
        STATE_ELEMENT=triton_dtype(state_dtype or params[0].dtype),
        ROUNDING=mode,
        DECOUPLED_WEIGHT_DECAY=decoupled_weight_decay,
        AMSGRAD=amsgrad,
        MAXIMIZE=maximize,
        HAS_GRAD_SCALE=grad_scale is not None,
        HAS_FOUND_INF=found_inf is not None,
        BLOCK_SIZE=block_size,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
