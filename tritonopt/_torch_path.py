"""The plain-torch updates for devices the Triton kernels do not run on (CPU by default).

Each applies torch's own fused op (what ``torch.optim.SGD(fused=True)`` and
``torch.optim.Adam(fused=True)`` call) to the same flat buffers the kernels use,
with the kernels' contracts: one fused pass per segment, GradScaler's scale and
inf flag handled inside it. bf16/fp16 SGD segments are updated through fp32
copies and rounded once, the kernels' numerics, because torch 2.13's CPU fused
SGD gives wrong results for 16-bit tensors (errors of 0.3 on values of order 1,
checked in ``tests/test_kernels.py``); its fused Adam already computes them in
fp32 and rounds once.
"""

import torch
from torch.optim.adam import _single_tensor_adam

_ROUNDED_ONCE = (torch.bfloat16, torch.float16)


def _in_fp32(update, buffers: tuple[torch.Tensor | None, ...], write_back: tuple[bool, ...]) -> None:
    """Run ``update`` on fp32 copies of 16-bit ``buffers`` and round the ``write_back`` ones once."""
    if buffers[0].dtype not in _ROUNDED_ONCE:
        update(*buffers)
        return
    computed = tuple(None if b is None else b.float() for b in buffers)
    update(*computed)
    for buffer, value, written in zip(buffers, computed, write_back):
        if written and buffer is not None:
            buffer.copy_(value)


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
    """Same contract as ``tritonopt.kernels.sgd.sgd_update``."""
    if flat_params.numel() == 0:
        return
    has_momentum = momentum != 0

    def update(params, grads, buffer):
        torch._fused_sgd_(
            [params],
            [grads],
            [buffer] if has_momentum else [],
            weight_decay=weight_decay,
            momentum=momentum,
            lr=lr,
            dampening=dampening,
            nesterov=nesterov,
            maximize=maximize,
            is_first_step=has_momentum and first_step,
            grad_scale=grad_scale,
            found_inf=found_inf,
        )

    buffers = (flat_params, flat_grads, momentum_buffer if has_momentum else None)
    _in_fp32(update, buffers, write_back=(True, grad_scale is not None, True))


def adam_update(
    flat_params: torch.Tensor,
    flat_grads: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    max_exp_avg_sq: torch.Tensor | None = None,
    *,
    step: int,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
) -> None:
    """Same contract as ``tritonopt.kernels.adam.adam_update``."""
    if flat_params.numel() == 0:
        return
    tensor_hyperparameters = any(isinstance(h, torch.Tensor) for h in (lr, beta1, beta2))
    if tensor_hyperparameters:
        # torch's fused op computes its scalars in double, its for-loop (the reference)
        # in the tensor hyperparameter's dtype: run the for-loop's own function.
        def update(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq):
            if found_inf is not None and found_inf.item():
                return
            if grad_scale is not None:
                grads.div_(grad_scale.to(grads.dtype))
            _single_tensor_adam(
                [params], [grads], [exp_avg], [exp_avg_sq], [max_exp_avg_sq] if amsgrad else [],
                [torch.tensor(float(step - 1))], None, None, amsgrad=amsgrad, has_complex=False,
                beta1=beta1, beta2=beta2, lr=lr, weight_decay=weight_decay, eps=eps, maximize=maximize,
                capturable=False, differentiable=False, decoupled_weight_decay=decoupled_weight_decay,
            )

    else:
        fused_adam = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_

        def update(params, grads, exp_avg, exp_avg_sq, max_exp_avg_sq):
            fused_adam(
                [params],
                [grads],
                [exp_avg],
                [exp_avg_sq],
                [max_exp_avg_sq] if amsgrad else [],
                [torch.tensor(float(step), dtype=torch.float32, device=params.device)],
                amsgrad=amsgrad,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=weight_decay,
                eps=eps,
                maximize=maximize,
                grad_scale=grad_scale,
                found_inf=found_inf,
            )

    buffers = (flat_params, flat_grads, exp_avg, exp_avg_sq, max_exp_avg_sq if amsgrad else None)
    if tensor_hyperparameters:
        _in_fp32(update, buffers, write_back=(True, grad_scale is not None, True, True, True))
    else:  # torch's CPU fused Adam computes 16-bit buffers in fp32 and rounds once already
        update(*buffers)
