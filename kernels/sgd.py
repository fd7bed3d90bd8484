"""SGD with momentum, one launch over a flat buffer."""

import torch
import triton
import triton.language as tl

from ._elementwise import hyperparameter, load_upcast, store_rounded
from ._launch import BLOCK_SIZE, NUM_WARPS, grid, split_hyperparameter


@triton.jit
def _sgd_kernel(
    param_ptr,
    grad_ptr,
    momentum_buffer_ptr,
    n_elements,
    lr_head,
    lr_tail,
    weight_decay_head,
    weight_decay_tail,
    momentum_head,
    momentum_tail,
    grad_weight_head,
    grad_weight_tail,
    HAS_WEIGHT_DECAY: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    FIRST_STEP: tl.constexpr,
    NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One SGD step over ``n_elements`` of three same-dtype flat buffers.

    ``param`` and ``grad`` (and ``momentum_buffer`` when ``HAS_MOMENTUM``) are
    contiguous buffers of one float dtype; the update is torch's
    ``_single_tensor_sgd`` computed in fp32 (fp64 for float64) and rounded once:

        g = -grad if MAXIMIZE else grad
        g = g + weight_decay * param                     if HAS_WEIGHT_DECAY
        buf = g if FIRST_STEP else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if NESTEROV else buf     if HAS_MOMENTUM
        param = param - lr * g

    ``grad_weight`` is ``1 - dampening``, computed by the caller in double as torch does.
    """
    offsets = tl.program_id(0).to(tl.int64) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    param = load_upcast(param_ptr, offsets, mask)
    grad = load_upcast(grad_ptr, offsets, mask)
    compute_dtype: tl.constexpr = param.dtype
    if MAXIMIZE:
        grad = -grad
    if HAS_WEIGHT_DECAY:
        weight_decay = hyperparameter(weight_decay_head, weight_decay_tail, compute_dtype)
        grad = grad + weight_decay * param
    if HAS_MOMENTUM:
        if FIRST_STEP:
            momentum_buffer = grad
        else:
            momentum = hyperparameter(momentum_head, momentum_tail, compute_dtype)
            grad_weight = hyperparameter(grad_weight_head, grad_weight_tail, compute_dtype)
            momentum_buffer = load_upcast(momentum_buffer_ptr, offsets, mask)
            momentum_buffer = momentum_buffer * momentum + grad_weight * grad
        store_rounded(momentum_buffer_ptr, offsets, momentum_buffer, mask)
        if NESTEROV:
            momentum = hyperparameter(momentum_head, momentum_tail, compute_dtype)
            grad = grad + momentum * momentum_buffer
        else:
            grad = momentum_buffer
    lr = hyperparameter(lr_head, lr_tail, compute_dtype)
    store_rounded(param_ptr, offsets, param - lr * grad, mask)


def sgd_update(
    flat_params: torch.Tensor,
    flat_grads: torch.Tensor,
    momentum_buffer: torch.Tensor | None,
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
    first_step: bool,
) -> None:
    """Apply one SGD step in place to contiguous 1-D buffers of one real float dtype.

    ``momentum_buffer`` is required when ``momentum != 0``; with ``first_step``
    it is only written (initialised to the decayed, signed gradient).
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
        n_elements,
        *split_hyperparameter(lr),
        *split_hyperparameter(weight_decay),
        *split_hyperparameter(momentum),
        *split_hyperparameter(1.0 - dampening),
        HAS_WEIGHT_DECAY=weight_decay != 0,
        HAS_MOMENTUM=has_momentum,
        FIRST_STEP=has_momentum and first_step,
        NESTEROV=has_momentum and nesterov,
        MAXIMIZE=maximize,
        BLOCK_SIZE=BLOCK_SIZE,
        num_warps=NUM_WARPS,
    )
