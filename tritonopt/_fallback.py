"""What tritonopt's launches cannot do, run by torch's own implementation.

One place decides which parameters leave the launch for torch's path:

* a whole group, when it is ``differentiable=True`` (autograd must flow through
  the update, which a kernel cannot give) or lists a parameter twice (torch warns
  and updates it once per listing; its result is what users get from torch);
* parameters on devices other than CPU and CUDA (``meta``, MPS, XPU, ...): torch
  picks its for-loop or foreach path for them, so tritonopt runs on a Mac too;
* parameters whose gradient is sparse at this step (torch's SGD steps them; its
  Adam and AdamW raise torch's error).

For those parameters a step is torch's own step body for one group: torch's
``_init_group`` (called unbound on the tritonopt optimizer, so state is created in
``optimizer.state[p]`` as plain tensors, exactly as torch keeps it, and torch's
checks and exceptions apply), then torch's functional ``sgd(...)``/``adam(...)``
with the group's keywords. ``state_dict`` therefore stays interchangeable with
torch's. Nothing here runs for ordinary dense CPU/CUDA groups.
"""

from typing import Any

import torch
from torch.optim.adam import adam
from torch.optim.sgd import sgd
from torch.optim.optimizer import _get_capturable_supported_devices

KERNEL_DEVICE_TYPES = frozenset(("cpu", "cuda"))
"""Device types whose tensors tritonopt's launch updates (Triton kernels, or torch's fused ops on CPU)."""


def split(group: dict[str, Any]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``group``'s parameters as (those the launch updates, those torch's path updates),
    decided when the group's parameters change (``differentiable`` is checked per step
    by the engine, before this)."""
    params = group["params"]
    if len(set(map(id, params))) != len(params):
        return [], list(params)
    on_kernel_devices = [p.device.type in KERNEL_DEVICE_TYPES for p in params]
    if all(on_kernel_devices):
        return list(params), []
    return (
        [p for p, fast in zip(params, on_kernel_devices) if fast],
        [p for p, fast in zip(params, on_kernel_devices) if not fast],
    )


def _amp(optimizer: torch.optim.Optimizer, group: dict[str, Any], grads: list[torch.Tensor]) -> tuple[bool, dict]:
    """GradScaler's contract for torch's path: tritonopt tells GradScaler it unscales
    (``_step_supports_amp_scaling``), which only torch's fused path does itself.
    Elsewhere the gradients are unscaled here as ``GradScaler.unscale_`` would, and
    an inf step is skipped. Returns (skip, the functional's amp keywords)."""
    grad_scale = getattr(optimizer, "grad_scale", None)
    found_inf = getattr(optimizer, "found_inf", None)
    if group.get("fused"):
        return False, {"grad_scale": grad_scale, "found_inf": found_inf}
    if found_inf is not None and bool(found_inf):
        return True, {}
    if grad_scale is not None:
        inv_scale = grad_scale.double().reciprocal().float()
        for grad in grads:
            grad.mul_(inv_scale.to(grad.device))
    return False, {}


def sgd_step(optimizer: torch.optim.Optimizer, group: dict[str, Any], params: list[torch.Tensor]) -> None:
    """torch.optim.SGD's step for ``params`` of ``group``."""
    group = {**group, "params": params}
    params_with_grad: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    momentum_buffer_list: list[torch.Tensor | None] = []
    has_sparse_grad = torch.optim.SGD._init_group(optimizer, group, params_with_grad, grads, momentum_buffer_list)
    skip, amp = _amp(optimizer, group, grads)
    if skip or not params_with_grad:
        return
    sgd(
        params_with_grad,
        grads,
        momentum_buffer_list,
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
        lr=group["lr"],
        dampening=group["dampening"],
        nesterov=group["nesterov"],
        maximize=group["maximize"],
        has_sparse_grad=has_sparse_grad,
        foreach=group["foreach"],
        fused=group["fused"],
        **amp,
    )
    if group["momentum"] != 0:
        for p, momentum_buffer in zip(params_with_grad, momentum_buffer_list, strict=True):
            optimizer.state[p]["momentum_buffer"] = momentum_buffer


def adam_step(optimizer: torch.optim.Optimizer, group: dict[str, Any], params: list[torch.Tensor]) -> None:
    """torch.optim.Adam's (and AdamW's) step for ``params`` of ``group``; sparse
    gradients raise torch's error there."""
    group = {**group, "params": params}
    params_with_grad: list[torch.Tensor] = []
    grads: list[torch.Tensor] = []
    exp_avgs: list[torch.Tensor] = []
    exp_avg_sqs: list[torch.Tensor] = []
    max_exp_avg_sqs: list[torch.Tensor] = []
    state_steps: list[torch.Tensor] = []
    has_complex = torch.optim.Adam._init_group(
        optimizer, group, params_with_grad, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps
    )
    skip, amp = _amp(optimizer, group, grads)
    if skip or not params_with_grad:
        return
    beta1, beta2 = group["betas"]
    adam(
        params_with_grad,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        state_steps,
        amsgrad=group["amsgrad"],
        has_complex=has_complex,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
        foreach=group["foreach"],
        # tritonopt's capturable also runs on the CPU, where torch's capturable path refuses.
        capturable=group["capturable"] and params_with_grad[0].device.type in _get_capturable_supported_devices(),
        differentiable=group["differentiable"],
        fused=group["fused"],
        decoupled_weight_decay=group["decoupled_weight_decay"],
        **amp,
    )
