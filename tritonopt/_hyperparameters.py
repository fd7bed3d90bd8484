"""Constructor checks shared by the optimizers, each rule written once with torch's message."""

from typing import Any

import torch


def check_lr(lr: float | torch.Tensor) -> None:
    if isinstance(lr, torch.Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_non_negative(name: str, value: Any) -> None:
    """``momentum``, ``weight_decay`` and ``epsilon`` must be >= 0."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {name} value: {value}")


def check_paths(*, foreach: bool | None, fused: bool | None, differentiable: bool) -> None:
    """torch's checks of ``fused`` against ``differentiable`` and ``foreach``, in its order."""
    if fused:
        if differentiable:
            raise RuntimeError("`fused` does not support `differentiable`")
        if foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
