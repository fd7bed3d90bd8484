"""The flat-buffer engine: a ``torch.optim.Optimizer`` whose groups live in flat buffers.

Subclasses declare their per-element state (``state_keys``), when a group needs
it (``_uses_state``) and how a segment is updated (``_update``); the engine owns
flattening, gradient gathering, state exposure through ``self.state``, staleness
checks and the split of a bucket into launches.
"""

from dataclasses import dataclass
from itertools import groupby
from operator import is_
from typing import Any

import torch
from torch.optim import Optimizer

from ._flat import FlatBucket, Segment


@dataclass
class _FlatGroup:
    params: list[torch.Tensor]
    buckets: list[FlatBucket]

    def is_current(self, params: list[torch.Tensor]) -> bool:
        return (
            len(params) == len(self.params)
            and all(map(is_, params, self.params))
            and all(bucket.is_current() for bucket in self.buckets)
        )


class FlatOptimizer(Optimizer):
    """Base of tritonopt's optimizers (see ``tritonopt.SGD`` for the user-facing contract)."""

    state_keys: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._flat_groups: list[_FlatGroup | None] = []
        super().__init__(params, defaults)

    # --- what a concrete optimizer provides -------------------------------------
    def _uses_state(self, group: dict[str, Any]) -> bool:
        """Whether a step of ``group`` reads and writes the ``state_keys`` buffers."""
        raise NotImplementedError

    def _update(self, group: dict[str, Any], segment: Segment, first_step: bool) -> None:
        """Apply one step to ``segment``; ``first_step`` means its state is uninitialised."""
        raise NotImplementedError

    # --- torch.optim.Optimizer API ----------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        try:
            _check_params(self.param_groups[-1]["params"])
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise
        self._flat_groups.append(self._flatten(self.param_groups[-1]))

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_flat_groups" in self.__dict__ and "state" in state:
            self._check_loaded_state(state["state"])
        super().__setstate__(state)
        entries = self._state_entries()
        for flat_group in self.__dict__.get("_flat_groups", []):
            if flat_group is not None:
                for bucket in flat_group.buckets:
                    self._adopt_state(bucket, entries)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        entries = self._state_entries()
        for index, group in enumerate(self.param_groups):
            if group.get("differentiable", False):
                raise RuntimeError(
                    f"{type(self).__name__} does not support differentiable=True: "
                    "its update runs in a kernel outside autograd"
                )
            for bucket in self._flat_group(index).buckets:
                self._step_bucket(group, bucket, entries)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """As ``torch.optim.Optimizer.zero_grad``; with ``set_to_none=False`` the
        gradients in the flat buffer are zeroed by one fill per bucket and stay there."""
        if set_to_none:
            super().zero_grad(set_to_none=True)
            return
        with torch.autograd.profiler.record_function(self._zero_grad_profile_name):
            for index in range(len(self.param_groups)):
                for bucket in self._flat_group(index).buckets:
                    bucket.zero_grads()

    # --- engine -----------------------------------------------------------------
    def _flat_group(self, index: int) -> _FlatGroup:
        """The flat storage of group ``index``, rebuilt if its parameters moved."""
        flat_groups = self.__dict__.setdefault("_flat_groups", [])
        flat_groups.extend([None] * (len(self.param_groups) - len(flat_groups)))
        params = self.param_groups[index]["params"]
        flat_group = flat_groups[index]
        if flat_group is None or not flat_group.is_current(params):
            _check_params(params)
            flat_group = flat_groups[index] = self._flatten(self.param_groups[index])
        return flat_group

    def _flatten(self, group: dict[str, Any]) -> _FlatGroup:
        by_device_dtype: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in group["params"]:
            by_device_dtype.setdefault((p.device, p.dtype), []).append(p)
        buckets = []
        entries = self._state_entries()
        for params in by_device_dtype.values():
            bucket = FlatBucket(params, self.state_keys)
            self._adopt_state(bucket, entries)
            buckets.append(bucket)
        return _FlatGroup(list(group["params"]), buckets)

    def _state_entries(self) -> dict[int, dict[str, Any]]:
        """``self.state`` keyed by ``id(param)``.

        A tensor-keyed lookup calls the Python-level ``Tensor.__hash__``; on the
        per-step path, one pass over ``self.state`` and integer lookups cost a
        fraction of that per parameter.
        """
        return {id(param): entry for param, entry in self.state.items()}

    def _adopt_state(self, bucket: FlatBucket, entries: dict[int, dict[str, Any]]) -> None:
        """Copy state tensors that live outside the bucket into it and expose its views."""
        for index, p in enumerate(bucket.params):
            self._has_state(bucket, index, p, entries.get(id(p)))

    def _has_state(
        self, bucket: FlatBucket, index: int, param: torch.Tensor, entry: dict[str, Any] | None
    ) -> bool:
        """Whether ``param`` has all its state; foreign state tensors are moved into the bucket."""
        if not entry:
            return False
        present = True
        for key in self.state_keys:
            value = entry.get(key)
            if value is None:
                present = False
                continue
            view = bucket.state_view(key, index)
            if value is not view:
                _check_state_tensor(key, value, param)
                view.copy_(value)
                entry[key] = view
        return present

    def _step_bucket(
        self, group: dict[str, Any], bucket: FlatBucket, entries: dict[int, dict[str, Any]]
    ) -> None:
        has_grad = bucket.gather_grads()
        if self._uses_state(group):
            initialised = self._initialise_state(bucket, has_grad, [entries.get(id(p)) for p in bucket.params])
        else:
            initialised = [True] * len(has_grad)
        # One launch per run of consecutive parameters with a gradient and the same
        # state status: a single launch for the whole bucket in the steady state.
        index = 0
        for (grad, ready), run in groupby(zip(has_grad, initialised)):
            length = len(list(run))
            if grad:
                self._update(group, bucket.segment(index, index + length), not ready)
            index += length

    def _initialise_state(
        self, bucket: FlatBucket, has_grad: list[bool], param_entries: list[dict[str, Any] | None]
    ) -> list[bool]:
        """Per parameter, whether its state existed before this step (True where it has
        no gradient). Parameters taking their first step get views of the flat state."""
        if _state_in_place(bucket, has_grad, param_entries):
            return [True] * len(has_grad)
        initialised = [
            self._has_state(bucket, i, p, entry) if grad else True
            for i, (p, grad, entry) in enumerate(zip(bucket.params, has_grad, param_entries))
        ]
        for i, (p, grad, ready) in enumerate(zip(bucket.params, has_grad, initialised)):
            if grad and not ready:
                entry = self.state[p]
                for key in self.state_keys:
                    entry[key] = bucket.state_view(key, i)
        return initialised

    def _check_loaded_state(self, state: dict[Any, Any]) -> None:
        for param, entry in state.items():
            if isinstance(param, torch.Tensor) and isinstance(entry, dict):
                for key in self.state_keys:
                    if entry.get(key) is not None:
                        _check_state_tensor(key, entry[key], param)


def _state_in_place(
    bucket: FlatBucket, has_grad: list[bool], param_entries: list[dict[str, Any] | None]
) -> bool:
    """The steady state: every parameter with a gradient holds the bucket's own views."""
    for key in bucket.state_keys:
        views = bucket.state_views.get(key)
        if views is None or not all(
            not grad or (entry is not None and entry.get(key) is view)
            for grad, entry, view in zip(has_grad, param_entries, views)
        ):
            return False
    return True


def _check_params(params: list[torch.Tensor]) -> None:
    """Reject what cannot live in a flat buffer, before anything is moved."""
    seen: set[int] = set()
    for index, p in enumerate(params):
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(
                f"parameter {index} has dtype {p.dtype}; only floating-point and complex "
                "tensors can be optimized"
            )
        if not p.is_leaf:
            raise ValueError("can't optimize a non-leaf Tensor")
        if id(p) in seen:
            raise ValueError(
                f"parameter {index} appears twice in one parameter group; "
                "list each parameter once"
            )
        seen.add(id(p))


def _check_state_tensor(key: str, value: Any, param: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor) or value.shape != param.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"optimizer state {key!r} of shape {shape} does not match its parameter "
            f"of shape {tuple(param.shape)}"
        )
