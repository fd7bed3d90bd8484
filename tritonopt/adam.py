"""tritonopt.Adam and tritonopt.AdamW: torch.optim.Adam's and AdamW's semantics over flat buffers."""

from typing import Any

import torch

from torch.optim.optimizer import _device_dtype_check_for_fused

from . import _fallback, _storage, _torch_path
from ._engine import FlatOptimizer
from ._hyperparameters import check_lr, check_non_negative, check_paths
from .kernels import adam as adam_kernels
from .kernels.adam import AdamHyperparameters


class Adam(FlatOptimizer):
    r"""Adam, a drop-in for ``torch.optim.Adam`` (L2 weight decay, or decoupled with
    ``decoupled_weight_decay=True``, which is AdamW).

    The update is torch's, parameter by parameter, with ``step`` counted per
    parameter (a parameter that first gets a gradient late starts at step 1)::

        g = -grad if maximize else grad
        param = param * (1 - lr * weight_decay)     (decoupled weight decay)
        g = g + weight_decay * param                (L2 weight decay)
        exp_avg = lerp(exp_avg, g, 1 - beta1)
        exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g * g
        max_exp_avg_sq = max(max_exp_avg_sq, exp_avg_sq)     (amsgrad; used below)
        param = param - lr / (1 - beta1**step) * exp_avg
                        / (sqrt(exp_avg_sq) / sqrt(1 - beta2**step) + eps)

    State is torch's: ``step`` (a 0-dim float32 CPU tensor; with ``capturable``, on
    the parameter's device), ``exp_avg``,
    ``exp_avg_sq`` and, with amsgrad, ``max_exp_avg_sq``, so ``state_dict``
    interchanges with torch both ways; switching amsgrad on for parameters that
    already have state raises ``KeyError`` at ``step``, as torch does.

    As for ``tritonopt.SGD``: parameters, gradients and state live in one flat
    buffer per (group, device, dtype); parameters with the same step count
    update in one launch; GradScaler's scale and inf flag are applied inside
    it (on CUDA, the step counts then cost one copy of the inf flag to the host
    per step); what the launch cannot do (``differentiable=True``, parameters on
    devices other than CPU and CUDA, a parameter listed twice) runs torch's own
    Adam, and sparse gradients raise torch's error; ``fused=True`` raises torch's
    error for what its fused op cannot take, and is otherwise recorded, as
    ``foreach`` is; bf16/fp16 are computed in fp32 and rounded once per buffer per step.

    ``capturable=True`` (torch's flag) makes ``step()`` safe to capture in a CUDA
    graph (``torch.cuda.graph``, or ``torch.compile(mode="reduce-overhead")``): it
    reads no device value on the host and allocates nothing once warmed up. The
    step counts live on the device and are counted there (GradScaler's skipped
    steps are taken back there, ``found_inf`` never read), the kernel forms the
    bias corrections from them, with torch's for-loop arithmetic, and a tensor
    ``lr`` or ``betas`` is copied into the launch's table on the device at every
    step, so updating it in place (``fill_``, what torch's schedulers do with a
    tensor lr) takes effect in the next replay. Float hyperparameters are read on
    the host: a replay keeps the values of the last eager step or the capture (as
    torch documents for its capturable optimizers). It also runs on the CPU, where
    torch's capturable Adam refuses; the CPU path without Triton's interpreter
    reads the step counts there, in host memory.

    ``rounding``, ``state_dtype`` and ``seed`` are as in ``tritonopt.SGD`` (Kahan
    keeps bf16 fine-tuning at 8 bytes per parameter besides the gradient: bf16
    weight, moments and compensation; stochastic rounding is not capturable).
    """

    kernel_update = staticmethod(adam_kernels.adam_update)
    torch_update = staticmethod(_torch_path.adam_update)
    torch_step = staticmethod(_fallback.adam_step)
    state_buffer_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "compensation")
    counts_steps = True

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float | torch.Tensor, float | torch.Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        rounding: str = "nearest",
        state_dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(lr, torch.Tensor) and foreach and not capturable:
            raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
        check_lr(lr)
        check_non_negative("epsilon", eps)
        for index, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {index}: {beta}")
        check_non_negative("weight_decay", weight_decay)
        if isinstance(betas[0], torch.Tensor) != isinstance(betas[1], torch.Tensor):
            raise ValueError("betas must be either both floats or both Tensors")
        for index, beta in enumerate(betas):
            if isinstance(beta, torch.Tensor) and foreach and not capturable:
                raise ValueError(
                    f"betas[{index}] as a Tensor is not supported for capturable=False and foreach=True"
                )
            if isinstance(beta, torch.Tensor) and beta.numel() != 1:
                raise ValueError(f"Tensor betas[{index}] must be 1-element")
        defaults = {
            "lr": lr,
            "betas": tuple(b.squeeze() if isinstance(b, torch.Tensor) else b for b in betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
            "decoupled_weight_decay": decoupled_weight_decay,
            **_storage.defaults(rounding, state_dtype, seed),
        }
        super().__init__(params, defaults)
        check_paths(foreach=foreach, fused=fused, differentiable=differentiable)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("amsgrad", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
            group.setdefault("decoupled_weight_decay", False)
            group.setdefault("fused", None)

    def _check_fused(self, group: dict[str, Any], entries: dict[int, dict[str, Any]]) -> None:
        # torch checks each parameter whose state it creates (C-level test for none first).
        if all(map(entries.get, map(id, group["params"]))):
            return
        for p in group["params"]:
            if p.grad is not None and not entries.get(id(p)):
                _device_dtype_check_for_fused(p)

    def _state_buffers(self, group: dict[str, Any]) -> tuple[str, ...]:
        return self.state_buffer_keys[:3] if group["amsgrad"] else self.state_buffer_keys[:2]

    def _switches(self, group: dict[str, Any]) -> dict[str, bool]:
        return {
            "decoupled_weight_decay": bool(group["decoupled_weight_decay"]),
            "amsgrad": bool(group["amsgrad"]),
            "maximize": bool(group["maximize"]),
            "capturable": bool(group["capturable"]),
        }

    def _hyperparameters(self, group: dict[str, Any], fresh: bool, step: float | None) -> AdamHyperparameters:
        beta1, beta2 = group["betas"]
        return AdamHyperparameters(
            lr=group["lr"],  # tensors stay tensors: torch's scalar arithmetic depends on it
            beta1=beta1,
            beta2=beta2,
            eps=float(group["eps"]),
            weight_decay=float(group["weight_decay"]),
            step=step,
        )


class AdamW(Adam):
    """AdamW, a drop-in for ``torch.optim.AdamW``: ``tritonopt.Adam`` with decoupled weight decay."""

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        betas: tuple[float | torch.Tensor, float | torch.Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        rounding: str = "nearest",
        state_dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            rounding=rounding,
            state_dtype=state_dtype,
            seed=seed,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
