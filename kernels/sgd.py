"""SGD with momentum, one launch over a flat buffer."""

import torch
import triton
import triton.language as tl

from ._elementwise import active_elements, hyperparameter, load_grad, load_upcast, store_rounded
from ._launch import BLOCK_SIZE, NUM_WARPS, float_bits, grid, scaling_arguments

# Runtime arguments that change between steps: never specialised on, never recompiled for.
HYPERPARAMETERS = ["lr_bits", "weight_decay_bits", "momentum_bits", "grad_weight_bits"]


@triton.jit(do_not_specialize=HYPERPARAMETERS)
def _sgd_kernel(
    param_ptr,
    grad_ptr,
    momentum_buffer_ptr,
    grad_scale_ptr,
    found_inf_ptr,
    n_elements,
    lr_bits: tl.int64,
    weight_decay_bits: tl.int64,
    momentum_bits: tl.int64,
    grad_weight_bits: tl.int64,
    HAS_WEIGHT_DECAY: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    FIRST_STEP: tl.constexpr,
    NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    HAS_GRAD_SCALE: tl.constexpr,
    HAS_FOUND_INF: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One SGD step over ``n_elements`` of three same-dtype flat buffers.

    ``param`` and ``grad`` (and ``momentum_buffer`` when ``HAS_MOMENTUM``) are
    contiguous buffers of one float dtype; the update is torch's
    ``_single_tensor_sgd`` computed in fp32 (fp64 for float64) and rounded once
    to the storage dtype:

        g = grad / grad_scale                            if HAS_GRAD_SCALE
        g = -g if MAXIMIZE else g
        g = g + weight_decay * param                     if HAS_WEIGHT_DECAY
        buf = g if FIRST_STEP else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if NESTEROV else buf     if HAS_MOMENTUM
        param = param - lr * g

    Each ``a + alpha * b`` is an explicit fma, as in torch's ``add(..., alpha=)``
    on CPU and CUDA, so fp32 and fp64 results match torch bit for bit in the
    common case whatever the backend's fp-contraction default. ``grad_weight``
    is ``1 - dampening``, computed by the caller in double as torch does.
    Hyperparameters arrive as float64 bit patterns (see ``float_bits``). With
    ``HAS_FOUND_INF`` nothing is read or written when ``found_inf`` is nonzero.
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
        grad = tl.fma(param, weight_decay, grad)
    if HAS_MOMENTUM:
        momentum = hyperparameter(momentum_bits, compute_dtype)
        if FIRST_STEP:
            momentum_buffer = grad
        else:
            grad_weight = hyperparameter(grad_weight_bits, compute_dtype)
            momentum_buffer = load_upcast(momentum_buffer_ptr, offsets, mask)
            momentum_buffer = tl.fma(grad, grad_weight, momentum_buffer * momentum)
        store_rounded(momentum_buffer_ptr, offsets, momentum_buffer, mask)
        if NESTEROV:
            grad = tl.fma(momentum_buffer, momentum, grad)
        else:
            grad = momentum_buffer
    lr = hyperparameter(lr_bits, compute_dtype)
    store_rounded(param_ptr, offsets, tl.fma(grad, -lr, param), mask)


def sgd_update(
    flat_params: torch.Tensor,
    flat_grads: torch.Tensor,
    momentum_buffer: torch.Tensor | None = None,
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """Apply one SGD step in place to contiguous 1-D buffers of one real float dtype.

    ``momentum_buffer`` is required when ``momentum != 0``; with ``first_step``
    it is only written (initialised to the decayed, signed gradient).
    ``grad_scale`` and ``found_inf`` are GradScaler's one-element float32 tensors
    on the buffers' device: gradients are divided by ``grad_scale`` (and left
    unscaled in ``flat_grads``), and nothing changes when ``found_inf`` is nonzero.
    """
    n_elements = flat_params.numel()
    if n_elements == 0:
        return
    has_momentum = momentum != 0
    if has_momentum and momentum_buffer is None:
        raise ValueError("sgd_update: momentum != 0 needs a momentum_buffer")
    _sgd_kernel[grid(n_elements)](
        flat_params,
        flat_grads,
        momentum_buffer if has_momentum else flat_grads,
        *scaling_arguments(flat_grads, grad_scale, found_inf),
        n_elements,
        float_bits(lr),
        float_bits(weight_decay),
        float_bits(momentum),
        float_bits(1.0 - dampening),
        HAS_WEIGHT_DECAY=weight_decay != 0,
        HAS_MOMENTUM=has_momentum,
        FIRST_STEP=has_momentum and first_step,
        NESTEROV=has_momentum and nesterov,
        MAXIMIZE=maximize,
        HAS_GRAD_SCALE=grad_scale is not None,
        HAS_FOUND_INF=found_inf is not None,
        BLOCK_SIZE=BLOCK_SIZE,
        num_warps=NUM_WARPS,
        enable_fp_fusion=False,
    )
