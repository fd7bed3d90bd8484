"""Adam and AdamW, one launch over a flat buffer."""

import torch
import triton
import triton.language as tl

from ._elementwise import (
    active_elements,
    divide,
    hyperparameter,
    load_grad,
    load_upcast,
    square_root,
    store_rounded,
)
from ._launch import BLOCK_SIZE, NUM_WARPS, float_bits, grid, scaling_arguments

# Runtime arguments that change between steps: never specialised on, never recompiled for.
HYPERPARAMETERS = [
    "weight_decay_bits",
    "exp_avg_weight_bits",
    "beta2_bits",
    "grad_sq_weight_bits",
    "bias_correction2_sqrt_bits",
    "eps_bits",
    "neg_step_size_bits",
]


@triton.jit(do_not_specialize=HYPERPARAMETERS)
def _adam_kernel(
    param_ptr,
    grad_ptr,
    exp_avg_ptr,
    exp_avg_sq_ptr,
    max_exp_avg_sq_ptr,
    grad_scale_ptr,
    found_inf_ptr,
    n_elements,
    weight_decay_bits: tl.int64,
    exp_avg_weight_bits: tl.int64,
    beta2_bits: tl.int64,
    grad_sq_weight_bits: tl.int64,
    bias_correction2_sqrt_bits: tl.int64,
    eps_bits: tl.int64,
    neg_step_size_bits: tl.int64,
    HAS_WEIGHT_DECAY: tl.constexpr,
    DECOUPLED_WEIGHT_DECAY: tl.constexpr,
    AMSGRAD: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
    HAS_FOUND_INF: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One Adam(W) step over ``n_elements`` of same-dtype flat buffers.

    torch's ``_single_tensor_adam`` for parameters sharing one step count,
    computed in fp32 (fp64 for float64) and rounded once per buffer:

        g = grad / grad_scale                                  if HAS_GRAD_SCALE
        g = -g if MAXIMIZE else g
        param = param * (1 - lr * weight_decay)                if DECOUPLED_WEIGHT_DECAY
        g = g + weight_decay * param                           if L2 weight decay
        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * g * g
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)       if AMSGRAD (used below)
        denom = sqrt(exp_avg_sq) / sqrt(1 - beta2 ** step) + eps
        param = param - (lr / (1 - beta1 ** step)) * exp_avg / denom

    The caller computes the scalars in double as torch does; ``weight_decay``
    carries ``1 - lr * weight_decay`` when decoupled. ``lerp`` is ATen's
    two-sided form, exact at both ends. With ``HAS_FOUND_INF`` nothing is read
    or written when ``found_inf`` is nonzero.
    """
    offsets = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < active_elements(n_elements, found_inf_ptr, HAS_FOUND_INF)
    param = load_upcast(param_ptr, offsets, mask)
    grad = load_grad(grad_ptr, offsets, mask, grad_scale_ptr, HAS_GRAD_SCALE)
    compute_dtype: tl.constexpr = param.dtype
    if MAXIMIZE:
        grad = -grad
    if HAS_WEIGHT_DECAY:
        weight_decay = hyperparameter(weight_decay_bits, compute_dtype)
        if DECOUPLED_WEIGHT_DECAY:
            param = param * weight_decay
        else:
            grad = tl.fma(param, weight_decay, grad)

    exp_avg = load_upcast(exp_avg_ptr, offsets, mask)
    exp_avg_weight = hyperparameter(exp_avg_weight_bits, compute_dtype)
    near_start = tl.abs(exp_avg_weight) < 0.5
    lerp_weight = tl.where(near_start, exp_avg_weight, exp_avg_weight - 1)
    exp_avg = tl.fma(lerp_weight, grad - exp_avg, tl.where(near_start, exp_avg, grad))
    store_rounded(exp_avg_ptr, offsets, exp_avg, mask)

    exp_avg_sq = load_upcast(exp_avg_sq_ptr, offsets, mask)
    beta2 = hyperparameter(beta2_bits, compute_dtype)
    grad_sq_weight = hyperparameter(grad_sq_weight_bits, compute_dtype)
    exp_avg_sq = exp_avg_sq * beta2 + grad_sq_weight * grad * grad
    store_rounded(exp_avg_sq_ptr, offsets, exp_avg_sq, mask)
    if AMSGRAD:
        exp_avg_sq = tl.maximum(load_upcast(max_exp_avg_sq_ptr, offsets, mask), exp_avg_sq)
        store_rounded(max_exp_avg_sq_ptr, offsets, exp_avg_sq, mask)

    bias_correction2_sqrt = hyperparameter(bias_correction2_sqrt_bits, compute_dtype)
    eps = hyperparameter(eps_bits, compute_dtype)
    denom = divide(square_root(exp_avg_sq), bias_correction2_sqrt) + eps
    neg_step_size = hyperparameter(neg_step_size_bits, compute_dtype)
    store_rounded(param_ptr, offsets, param + divide(neg_step_size * exp_avg, denom), mask)


def adam_scalars(
    lr: float | torch.Tensor, beta1: float | torch.Tensor, beta2: float | torch.Tensor, weight_decay: float, step: float
) -> tuple[float, float, float]:
    """``(1 - lr * weight_decay, -lr / (1 - beta1**step), sqrt(1 - beta2**step))``, computed
    as torch's for-loop Adam computes them: in double for floats, in a tensor
    hyperparameter's dtype (float32) when lr or the betas are tensors."""
    neg_step_size = -(lr / (1 - beta1**step))
    bias_correction2_sqrt = (1 - beta2**step) ** 0.5
    return float(1 - lr * weight_decay), float(neg_step_size), float(bias_correction2_sqrt)


def adam_update(
    flat_params: torch.Tensor,
    flat_grads: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None = None,
    *,
    step: int,
    lr: float | torch.Tensor,
    beta1: float | torch.Tensor,
    beta2: float | torch.Tensor,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """Apply Adam step number ``step`` (counted from 1) in place to contiguous 1-D buffers.

    ``lr`` and the betas may be 0-dim CPU tensors, as torch's optimizers accept.

    ``max_exp_avg_sq`` is required with ``amsgrad``. ``grad_scale`` and
    ``found_inf`` are GradScaler's one-element float32 tensors on the buffers'
    device: gradients are divided by ``grad_scale`` (and left unscaled in
    ``flat_grads``), and nothing changes when ``found_inf`` is nonzero.
    """
    n_elements = flat_params.numel()
    if n_elements == 0:
        return
    if amsgrad and max_exp_avg_sq is None:
        raise ValueError("adam_update: amsgrad needs a max_exp_avg_sq buffer")
    has_weight_decay = weight_decay != 0
    decay_factor, neg_step_size, bias_correction2_sqrt = adam_scalars(lr, beta1, beta2, weight_decay, step)
    _adam_kernel[grid(n_elements)](
        flat_params,
        flat_grads,
        exp_avg,
        exp_avg_sq,
        max_exp_avg_sq if amsgrad else exp_avg_sq,
        *scaling_arguments(flat_grads, grad_scale, found_inf),
        n_elements,
        float_bits(decay_factor if decoupled_weight_decay else weight_decay),
        float_bits(1 - float(beta1)),
        float_bits(beta2),
        float_bits(1 - float(beta2)),
        float_bits(bias_correction2_sqrt),
        float_bits(eps),
        float_bits(neg_step_size),
        HAS_WEIGHT_DECAY=has_weight_decay,
        DECOUPLED_WEIGHT_DECAY=has_weight_decay and decoupled_weight_decay,
        AMSGRAD=amsgrad,
        MAXIMIZE=maximize,
        HAS_GRAD_SCALE=grad_scale is not None,
        HAS_FOUND_INF=found_inf is not None,
        BLOCK_SIZE=BLOCK_SIZE,
        num_warps=NUM_WARPS,
        enable_fp_fusion=False,
    )
