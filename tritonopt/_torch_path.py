"""The plain-torch update for devices the Triton kernels do not run on (CPU by default).

It applies torch's own fused SGD op (what ``torch.optim.SGD(fused=True)`` calls)
to the same flat buffers the kernels use, so a CPU step is one fused pass per
segment with the kernels' numerics: compute in fp32 (fp64 for float64), round once.
"""

import torch


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
    torch._fused_sgd_(
        [flat_params],
        [flat_grads],
        [momentum_buffer] if has_momentum else [],
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
        is_first_step=has_momentum and first_step,
    )
