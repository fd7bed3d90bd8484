"""Adam and AdamW: one launch over many tensors, driven by a block table."""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from ._blocks import BlockTable, buffer_pointer, hyperparameter_rows, is_vector_block, load_block, scalar_pointer
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


def _kind(value: float | torch.Tensor) -> float:
    """How torch's for-loop Adam computes with a hyperparameter: 0 for a Python float
    (in double), 1 for a tensor of a narrower dtype (its scalar arithmetic rounds to
    float32), 2 for a float64 tensor."""
    if not isinstance(value, torch.Tensor):
        return 0.0
    return 2.0 if value.dtype == torch.float64 else 1.0


def _capturable_row(row: AdamHyperparameters) -> tuple[tuple[float, ...], list[tuple[int, torch.Tensor]]]:
    """A capturable launch's row, read by ``_step_scalars`` with the step count from the
    device: weight_decay, lr, beta1, beta2, eps and the kinds of lr, beta1 and beta2;
    and the ``(column, tensor)`` cells the device copies tensor hyperparameters into
    at every step (their table value is 0), so no value is read on the host."""
    values = (row.lr, row.beta1, row.beta2)
    cells = [(column, value) for column, value in zip((1, 2, 3), values) if isinstance(value, torch.Tensor)]
    floats = tuple(0.0 if isinstance(value, torch.Tensor) else float(value) for value in values)
    return (float(row.weight_decay), *floats, float(row.eps), *map(_kind, values), *random_stream_columns(0, 0)), cells


@triton.jit
def _as(value, kind):
    """``value`` (fp64) as torch's scalar arithmetic of that kind leaves it: rounded to
    float32 when ``kind`` is 1 (the exact float32 result, since fp64 holds every
    float32 sum, product, quotient and square root exactly before that rounding)."""
    return tl.where(kind == 1, value.to(tl.float32).to(tl.float64), value)


@triton.jit
def _power(base, exponent):
    """``base ** exponent`` in fp64 for a whole ``exponent`` >= 0, by repeated squaring:
    IEEE multiplies only (at most 2 log2(exponent) of them, a relative error of a few
    1e-15), where a libdevice ``pow`` or ``exp``/``log`` would bring approximate
    reciprocals into the build."""
    result = base * 0 + 1
    remaining = exponent.to(tl.int64)
    while remaining > 0:
        result = tl.where(remaining % 2 == 1, result * base, result)
        base = base * base
        remaining = remaining // 2
    return result


@triton.jit
def _step_scalars(hyperparameters, step):
    """A capturable row's columns as ``_kernel_row`` computes them on the host, for the
    step count ``step``: the same double arithmetic (``beta ** step`` by ``_power``), rounded as torch's for-loop rounds where a tensor hyperparameter
    takes part (``adam_scalars``)."""
    weight_decay = tl.load(hyperparameters)
    lr = tl.load(hyperparameters + 1)
    beta1 = tl.load(hyperparameters + 2)
    beta2 = tl.load(hyperparameters + 3)
    eps = tl.load(hyperparameters + 4)
    lr_kind = tl.load(hyperparameters + 5)
    beta1_kind = tl.load(hyperparameters + 6)
    beta2_kind = tl.load(hyperparameters + 7)
    decay_factor = _as(1 - _as(lr * _as(weight_decay, lr_kind), lr_kind), lr_kind)
    bias_correction1 = _as(1 - _as(_power(beta1, step), beta1_kind), beta1_kind)
    quotient_kind = tl.maximum(lr_kind, beta1_kind)
    neg_step_size = -_as(_as(lr, quotient_kind) / _as(bias_correction1, quotient_kind), quotient_kind)
    bias_correction2 = _as(1 - _as(_power(beta2, step), beta2_kind), beta2_kind)
    bias_correction2_sqrt = _as(tl.sqrt(bias_correction2), beta2_kind)
    return (
        weight_decay, decay_factor, 1 - beta1, beta2, 1 - beta2, bias_correction2_sqrt, eps, neg_step_size,
    )


@triton.jit
def _adam_block(
    blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
    ELEMENT: tl.constexpr, STATE_ELEMENT: tl.constexpr, ROUNDING: tl.constexpr,
    DECOUPLED_WEIGHT_DECAY: tl.constexpr, AMSGRAD: tl.constexpr, MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr, HAS_FOUND_INF: tl.constexpr, CAPTURABLE: tl.constexpr, STEP_ELEMENT: tl.constexpr,
    BLOCK_SIZE: tl.constexpr, VECTOR: tl.constexpr,
):
    row, first, offsets, mask, param_ptr, hyperparameters, param, grad = load_block(
        blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr,
        9, 11, ELEMENT, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, BLOCK_SIZE, VECTOR,
    )
    param = load_param(param, row, 5, first, offsets, mask, ELEMENT, ROUNDING, VECTOR)
    compute_dtype: tl.constexpr = param.dtype
    exp_avg_ptr = buffer_pointer(row, 2, first, STATE_ELEMENT, VECTOR)
    exp_avg_sq_ptr = buffer_pointer(row, 3, first, STATE_ELEMENT, VECTOR)
    if CAPTURABLE:
        step = tl.load(scalar_pointer(row, 6, STEP_ELEMENT)).to(tl.float64)
        scalars = _step_scalars(hyperparameters, step)
        weight_decay = scalars[0].to(compute_dtype)
        decay_factor = scalars[1].to(compute_dtype)
        exp_avg_weight = scalars[2].to(compute_dtype)
        beta2 = scalars[3].to(compute_dtype)
        grad_sq_weight = scalars[4].to(compute_dtype)
        bias_correction2_sqrt = scalars[5].to(compute_dtype)
        eps = scalars[6].to(compute_dtype)
        neg_step_size = scalars[7].to(compute_dtype)
    else:
        weight_decay = hyperparameter(hyperparameters, compute_dtype)
        decay_factor = hyperparameter(hyperparameters + 1, compute_dtype)
        exp_avg_weight = hyperparameter(hyperparameters + 2, compute_dtype)
        beta2 = hyperparameter(hyperparameters + 3, compute_dtype)
        grad_sq_weight = hyperparameter(hyperparameters + 4, compute_dtype)
        bias_correction2_sqrt = hyperparameter(hyperparameters + 5, compute_dtype)
        eps = hyperparameter(hyperparameters + 6, compute_dtype)
        neg_step_size = hyperparameter(hyperparameters + 7, compute_dtype)
    if weight_decay != 0:
        if DECOUPLED_WEIGHT_DECAY:
            param = param * decay_factor
        else:
            grad = tl.fma(param, weight_decay, grad)

    exp_avg = load_upcast(exp_avg_ptr, offsets, mask)
    near_start = tl.abs(exp_avg_weight) < 0.5
    lerp_weight = tl.where(near_start, exp_avg_weight, exp_avg_weight - 1)
    exp_avg = tl.fma(lerp_weight, grad - exp_avg, tl.where(near_start, exp_avg, grad))
    store_rounded(exp_avg_ptr, offsets, exp_avg, mask)

    exp_avg_sq = load_upcast(exp_avg_sq_ptr, offsets, mask)
    exp_avg_sq = exp_avg_sq * beta2 + grad_sq_weight * grad * grad
    store_rounded(exp_avg_sq_ptr, offsets, exp_avg_sq, mask)
    if AMSGRAD:
        max_exp_avg_sq_ptr = buffer_pointer(row, 4, first, STATE_ELEMENT, VECTOR)
        exp_avg_sq = tl.maximum(load_upcast(max_exp_avg_sq_ptr, offsets, mask), exp_avg_sq)
        store_rounded(max_exp_avg_sq_ptr, offsets, exp_avg_sq, mask)

    denom = divide(square_root(exp_avg_sq), bias_correction2_sqrt) + eps
    store_param(
        param_ptr, param + divide(neg_step_size * exp_avg, denom), row, 5, 7, hyperparameters + 8, first,
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
    CAPTURABLE: tl.constexpr,
    STEP_ELEMENT: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One Adam(W) step over one block of one tensor; the block table says which.

    Each tensor row holds the addresses of a parameter and its gradient (storage
    dtype ``ELEMENT``), ``exp_avg``, ``exp_avg_sq`` and (when ``AMSGRAD``)
    ``max_exp_avg_sq`` (dtype ``STATE_ELEMENT``), its compensation (``ROUNDING ==
    KAHAN``; ``ELEMENT``), of its step count (``STEP_ELEMENT``, read when
    ``CAPTURABLE``), its random stream, and its hyperparameter row: the
    launch-ready columns of ``_kernel_row``, or with ``CAPTURABLE`` the raw ones
    of ``_capturable_row``, from which the kernel forms the bias corrections for
    the step count it reads. The update is torch's ``_single_tensor_adam`` for
    tensors sharing one step count, computed in fp32 (fp64 for float64) and
    rounded once per buffer, the parameter in ``ROUNDING``'s way (``_rounding``;
    with Kahan, ``param`` below is parameter plus compensation):

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
            ROUNDING, DECOUPLED_WEIGHT_DECAY, AMSGRAD, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, CAPTURABLE,
            STEP_ELEMENT, BLOCK_SIZE, True,
        )
    else:
        _adam_block(
            blocks_ptr, tensors_ptr, hyperparameters_ptr, grad_scale_ptr, found_inf_ptr, ELEMENT, STATE_ELEMENT,
            ROUNDING, DECOUPLED_WEIGHT_DECAY, AMSGRAD, MAXIMIZE, HAS_GRAD_SCALE, HAS_FOUND_INF, CAPTURABLE,
            STEP_ELEMENT, BLOCK_SIZE, False,
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
    capturable: bool = False,
    steps: Sequence[torch.Tensor] | None = None,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    table: BlockTable | None = None,
) -> None:
    """Apply one Adam step in place to every tensor of ``params``, in one launch.

    Tensor ``i`` (its parameter, gradient and state, dense real tensors of one
    float dtype and device with identical strides) takes step number
    ``hyperparameters[rows[i]].step`` (counted from 1), or with ``capturable`` the
    value of ``steps[i]`` (a 0-dim float tensor on the device, already counted):
    then nothing is read on the host and tensor hyperparameters are copied into
    the table on the device. ``max_exp_avg_sqs`` is required with ``amsgrad``.
    GradScaler's ``grad_scale`` and ``found_inf`` and ``table``, ``rounding``,
    ``compensations``, ``streams`` and ``state_dtype`` (of ``exp_avgs`` and the
    other moments) are as in ``sgd_update``.
    """
    if amsgrad and max_exp_avg_sqs is None:
        raise ValueError("adam_update: amsgrad needs max_exp_avg_sqs")
    if capturable and steps is None:
        raise ValueError("adam_update: capturable needs steps")
    mode = rounding_mode(rounding, params[0].dtype, capturable)
    buffers = (
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else params,
        kahan_buffers(mode, compensations, params),
    )
    block_size, num_warps = launch_config(params[0].device, sum(map(torch.Tensor.numel, params)))
    rows_of_table, live = hyperparameter_rows(hyperparameters, capturable, _kernel_row, _capturable_row)
    blocks, tensors, table_rows = (table or BlockTable()).update(
        buffers, rows, rows_of_table, block_size, scalars=(steps if capturable else params,), live=live,
        capturable=capturable, streams=streams or [0] * len(params),
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
        CAPTURABLE=capturable,
        STEP_ELEMENT=triton_dtype(steps[0].dtype) if capturable else tl.float32,
        BLOCK_SIZE=block_size,
        num_warps=num_warps,
        enable_fp_fusion=False,
    )
