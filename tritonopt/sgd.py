"""tritonopt.SGD: torch.optim.SGD's semantics over flat buffers."""

from typing import Any

import torch

from torch.optim.optimizer import _device_dtype_check_for_fused

from . import _fallback, _storage, _torch_path
from ._engine import FlatOptimizer
from ._hyperparameters import check_lr, check_non_negative, check_paths
from .kernels import sgd as sgd_kernels
from .kernels.sgd import SGDHyperparameters


class SGD(FlatOptimizer):
    r"""Stochastic gradient descent (optionally with momentum), a drop-in for ``torch.optim.SGD``.

    The update is torch's, parameter by parameter::

        g = -grad if maximize else grad
        g = g + weight_decay * param                       (weight_decay != 0)
        buf = g on a parameter's first step with a gradient, else
              momentum * buf + (1 - dampening) * g         (momentum != 0)
        g = g + momentum * buf if nesterov else buf        (momentum != 0)
        param = param - lr * g

    Parameters whose ``.grad`` is None are skipped. The constructor takes what
    ``torch.optim.SGD`` takes and raises what it raises; ``param_groups``,
    ``state[p]['momentum_buffer']``, ``state_dict``/``load_state_dict`` (both ways
    with torch), hooks, schedulers, closures and ``repr`` behave as torch's.

    What the launch cannot do runs torch's own SGD on those parameters, with
    torch's numerics, state and exceptions: a ``differentiable=True`` group
    (autograd through the update), sparse gradients, parameters on devices other
    than CPU and CUDA (``meta``, MPS, XPU), and a group that lists a parameter
    twice (torch's warning and result). ``fused=True`` raises torch's error for
    what torch's fused op cannot take; otherwise ``foreach`` and ``fused`` are
    recorded, and the update is tritonopt's one pass. bf16/fp16 parameters are
    updated in fp32 and rounded once per step, which is never less accurate than
    torch's op-by-op rounding except at a near-tie, where fp32 then 16 bits is a
    double rounding (README, "Not supported yet").

    ``capturable=True`` (tritonopt's own: torch's SGD has none) makes ``step()``
    safe to capture in a CUDA graph, as for ``tritonopt.Adam``: no host read of a
    device value and no allocation once warmed up. A tensor ``lr`` or
    ``weight_decay`` is copied into the launch's table on the device at every
    step, so updating it in place (what torch's schedulers do with a tensor lr)
    takes effect in the next replay; float hyperparameters (``momentum``,
    ``dampening``, a float ``lr``) are read on the host, so a replay keeps the
    values of the last eager step or the capture. Each momentum buffer's first
    step is told by a step count on the device, kept by tritonopt (not in
    ``state``). The flag appears in ``param_groups`` and state_dicts only when
    set (torch's SGD loads them and ignores the key; loading torch's keeps this
    optimizer's own setting), so without it everything is torch's exactly.

    Beyond torch (keyword-only, per param group like any hyperparameter; see
    ``tritonopt/_storage.py``): ``rounding`` says how a bf16/fp16 parameter stores
    its fp32 result: ``"nearest"`` (default), ``"stochastic"`` (unbiased, from a
    Philox stream keyed by ``seed``; bf16 only; ``seed=None`` draws one from
    torch's default generator) or ``"kahan"`` (a ``compensation`` state buffer of
    the parameter's dtype keeps what rounding lost and is added back next step).
    fp32/fp64 parameters are stored as computed whatever the mode.
    ``state_dtype`` (e.g. ``torch.bfloat16``) stores the state buffers in that
    dtype (computed in fp32, rounded to nearest). The compensation, seed and
    stream position are in ``state_dict``, so a resumed run is bit-identical.
    """

    kernel_update = staticmethod(sgd_kernels.sgd_update)
    torch_update = staticmethod(_torch_path.sgd_update)
    torch_step = staticmethod(_fallback.sgd_step)
    state_buffer_keys = ("momentum_buffer", "compensation")

    def __init__(
        self,
        params: Any,
        lr: float | torch.Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | torch.Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        capturable: bool = False,
        rounding: str = "nearest",
        state_dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        check_lr(lr)
        check_non_negative("momentum", momentum)
        check_non_negative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": differentiable,
            "fused": fused,
            **_storage.defaults(rounding, state_dtype, seed),
        }
        if capturable:  # only then: without it, param_groups and repr are torch's exactly
            defaults["capturable"] = True
        super().__init__(params, defaults)
        check_paths(foreach=foreach, fused=fused, differentiable=differentiable)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("maximize", False)
            group.setdefault("foreach", None)
            group.setdefault("differentiable", False)
            group.setdefault("fused", False)
            if self.defaults.get("capturable"):
                # torch's SGD has no capturable flag: its state_dicts keep this optimizer's own.
                group.setdefault("capturable", True)

    def _check_fused(self, group: dict[str, Any], entries: dict[int, dict[str, Any]]) -> None:
        # torch checks the first parameter with a gradient, once per optimizer.
        if getattr(self, "_need_device_dtype_check_for_fused", True):
            for p in group["params"]:
                if p.grad is not None:
                    _device_dtype_check_for_fused(p)
                    self._need_device_dtype_check_for_fused = False
                    return

    def _state_buffers(self, group: dict[str, Any]) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _fresh(self, entry: dict[str, Any]) -> bool:
        return entry.get("momentum_buffer") is None

    def _switches(self, group: dict[str, Any]) -> dict[str, bool]:
        return {
            "nesterov": bool(group["nesterov"]),
            "maximize": bool(group["maximize"]),
            "capturable": bool(group.get("capturable", False)),
        }

    def _hyperparameters(self, group: dict[str, Any], fresh: bool, step: float | None) -> SGDHyperparameters:
        # A capturable launch copies tensor values on the device; float() would read them here.
        value = (lambda v: v) if group.get("capturable") else float
        return SGDHyperparameters(
            lr=value(group["lr"]),
            weight_decay=value(group["weight_decay"]),
            momentum=float(group["momentum"]),
            dampening=float(group["dampening"]),
            first_step=fresh,
        )
