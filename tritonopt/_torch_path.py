"""The plain-torch update for devices the Triton kernels do not run on (CPU by default).

It applies torch's own fused SGD op (what ``torch.optim.SGD(fused=True)`` calls)
to the same flat buffers the kernels use: one fused pass per segment, bit-equal
to torch's for-loop in fp32 and fp64. bf16/fp16 segments are updated through
fp32 copies and rounded once, the kernels' numerics, because torch 2.13's CPU
``_fused_sgd_`` gives wrong results for 16-bit tensors (errors of 0.3 on values
of order 1, checked in ``tests/test_kernels.py``).
"""

import torch

_ROUNDED_ONCE = (torch.bfloat16, torch.float16)


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
    """Same contract as ``tritonopt.kernels.sgd.sgd_update``."""
    if flat_params.numel() == 0:
        return
    has_momentum = momentum != 0
    buffers = [momentum_buffer] if has_momentum else []
    if flat_params.dtype in _ROUNDED_ONCE:
        params, grads = flat_params.float(), flat_grads.float()
        computed = [b.float() for b in buffers]
    else:
        params, grads, computed = flat_params, flat_grads, buffers
    torch._fused_sgd_(
        [params],
        [grads],
        computed,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
        is_first_step=has_momentum and first_step,
    )
    if params is not flat_params:
        flat_params.copy_(params)
        for buffer, value in zip(buffers, computed):
            buffer.copy_(value)
