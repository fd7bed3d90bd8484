"""The flat-buffer engine: a ``torch.optim.Optimizer`` whose groups live in flat buffers.

A concrete optimizer declares its update functions (a Triton kernel launcher
and a plain-torch one with the same contract), the per-element state buffers a
group's step uses (``_state_buffers``), whether it counts steps per parameter
(``counts_steps``), when a parameter's state starts afresh (``_fresh``) and how a
group's hyperparameters become update arguments (``_update_arguments``). The
engine owns flattening, gradient gathering, state exposure through
``self.state``, step counts, GradScaler's scale and inf flag, staleness checks
and the split of a bucket into launches.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import groupby
from operator import is_, itemgetter
from typing import Any, ClassVar

import torch
from torch._C._autograd import _profiler_enabled
from torch.autograd.profiler import record_function
from torch.optim import Optimizer

from . import _backend
from ._flat import FlatBucket


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

    # --- what a concrete optimizer declares ---------------------------------------
    kernel_update: ClassVar[Callable[..., None]]
    """The Triton launcher: ``(flat_params, flat_grads, **state_buffers, **arguments)``."""
    torch_update: ClassVar[Callable[..., None]]
    """The plain-torch update with the same contract, for devices without the kernels."""
    state_buffer_keys: ClassVar[tuple[str, ...]] = ()
    """Every per-element state key the optimizer keeps; each lives in a flat buffer."""
    counts_steps: ClassVar[bool] = False
    """Whether ``state[p]['step']`` counts each parameter's steps (passed as ``step``)."""

    def _state_buffers(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The keys of ``state_buffer_keys`` a step of ``group`` reads and writes."""
        raise NotImplementedError

    def _fresh(self, entry: dict[str, Any]) -> bool:
        """Whether a parameter's state is (re)created zeroed at this step, as torch does."""
        return not entry

    def _update_arguments(self, group: dict[str, Any], fresh: bool) -> dict[str, Any]:
        """The update's keyword arguments for ``group``; ``fresh`` as ``_fresh`` said."""
        raise NotImplementedError

    # --- torch.optim.Optimizer API ----------------------------------------------
    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._flat_groups: list[_FlatGroup | None] = []
        super().__init__(params, defaults)
        # GradScaler passes its scale and inf flag (as ``grad_scale``/``found_inf``)
        # instead of unscaling and checking the gradients itself.
        self._step_supports_amp_scaling = True

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
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        entries = self._state_entries()
        for index, group in enumerate(self.param_groups):
            if group.get("differentiable", False):
                raise RuntimeError(
                    f"{type(self).__name__} does not support differentiable=True: "
                    "its update runs in a kernel outside autograd"
                )
            # Every check that can raise runs for the whole group before anything
            # changes, as in torch's ``_init_group``.
            prepared = [(bucket, self._prepare_bucket(group, bucket, entries)) for bucket in self._flat_group(index).buckets]
            for bucket, (has_grad, fresh) in prepared:
                self._step_bucket(
                    group, bucket, has_grad, fresh, _on(grad_scale, bucket.device), _on(found_inf, bucket.device)
                )
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
            bucket = FlatBucket(params)
            self._adopt_state(bucket, entries)
            buckets.append(bucket)
        return _FlatGroup(list(group["params"]), buckets)

    def _state_entries(self) -> dict[int, dict[str, Any]]:
        """``self.state`` keyed by ``id(param)``.

        A tensor-keyed lookup calls the Python-level ``Tensor.__hash__``; on the
        per-step path, building this map and integer lookups (all C-level
        iteration) cost a fraction of that per parameter.
        """
        return dict(zip(map(id, self.state), self.state.values()))

    def _adopt_state(self, bucket: FlatBucket, entries: dict[int, dict[str, Any]]) -> None:
        """Move state tensors that live outside the bucket (loaded, or from an older
        bucket) into it, and expose its views in their place."""
        for index, p in enumerate(bucket.params):
            entry = entries.get(id(p))
            if entry:
                keys = [key for key in self._bucket_keys() if entry.get(key) is not None]
                self._adopt_entry(bucket, index, p, entry, keys)

    def _bucket_keys(self) -> tuple[str, ...]:
        return self.state_buffer_keys + ("step",) if self.counts_steps else self.state_buffer_keys

    def _adopt_entry(
        self, bucket: FlatBucket, index: int, param: torch.Tensor, entry: dict[str, Any], keys: list[str]
    ) -> None:
        """Make ``entry[key]`` the bucket's view for each of ``keys``, copying foreign values in."""
        for key in keys:
            value = entry[key]
            view = bucket.step_view(index) if key == "step" else bucket.state_view(key, index)
            if value is not view:
                if key == "step":
                    view.fill_(float(value))
                else:
                    _check_state_tensor(key, value, param)
                    view.copy_(value)
                entry[key] = view

    def _check_loaded_state(self, state: dict[Any, Any]) -> None:
        for param, entry in state.items():
            if isinstance(param, torch.Tensor) and isinstance(entry, dict):
                for key in self.state_buffer_keys:
                    if entry.get(key) is not None:
                        _check_state_tensor(key, entry[key], param)

    def _prepare_bucket(
        self, group: dict[str, Any], bucket: FlatBucket, entries: dict[int, dict[str, Any]]
    ) -> tuple[list[bool], list[bool]]:
        """Gather the bucket's gradients and state: which parameters have a gradient,
        and which of those start their state at this step."""
        has_grad = bucket.gather_grads()
        keys = self._state_buffers(group)
        if not (keys or self.counts_steps):
            return has_grad, [False] * len(has_grad)
        param_entries = list(map(entries.get, map(id, bucket.params)))
        step_keys = keys + ("step",) if self.counts_steps else keys
        if _state_in_place(bucket, step_keys, has_grad, param_entries):
            return has_grad, [False] * len(has_grad)
        fresh = []
        for index, (p, grad, entry) in enumerate(zip(bucket.params, has_grad, param_entries)):
            if not grad:
                fresh.append(False)
                continue
            if entry is None:
                entry = self.state[p]
            is_fresh = self._fresh(entry)
            if is_fresh:
                for key in keys:
                    entry[key] = bucket.state_view(key, index).zero_()
                if self.counts_steps:
                    entry["step"] = bucket.step_view(index).zero_()
            else:
                missing = [key for key in step_keys if key not in entry]
                if missing:
                    raise KeyError(missing[0])  # torch's state lookup raises the same
                self._adopt_entry(bucket, index, p, entry, list(step_keys))
            fresh.append(is_fresh)
        return has_grad, fresh

    def _step_bucket(
        self,
        group: dict[str, Any],
        bucket: FlatBucket,
        has_grad: list[bool],
        fresh: list[bool],
        grad_scale: torch.Tensor | None,
        found_inf: torch.Tensor | None,
    ) -> None:
        keys = self._state_buffers(group)
        steps = bucket.advance_steps(has_grad) if self.counts_steps else [None] * len(has_grad)
        on_triton = _backend.uses_triton(bucket.device)
        update = self.kernel_update if on_triton else self.torch_update
        # One launch per run of consecutive parameters with a gradient, the same state
        # status and step count: a single launch for the whole bucket in the steady state.
        if all(has_grad) and not any(fresh) and steps.count(steps[0]) == len(steps):
            runs = [((True, False, steps[0]), len(steps))]
        else:
            runs = [(key, len(list(run))) for key, run in groupby(zip(has_grad, fresh, steps))]
        index = 0
        for (grad, is_fresh, step), length in runs:
            if grad:
                segment = bucket.segment(index, index + length)
                arguments = self._update_arguments(group, is_fresh)
                if step is not None:
                    arguments["step"] = step
                # A range costs ~10 us even when nothing records it: only build one when profiling.
                range_name = _profiler_enabled() and _launch_name(self, on_triton, bucket.dtype, arguments)
                with record_function(range_name) if range_name else nullcontext():
                    update(
                        segment.params,
                        segment.grads,
                        **{key: segment.state[key] for key in keys},
                        **arguments,
                        grad_scale=grad_scale,
                        found_inf=found_inf,
                    )
            index += length
        if self.counts_steps and found_inf is not None:
            bucket.retract_steps(has_grad, found_inf)


def _launch_name(optimizer: Optimizer, on_triton: bool, dtype: torch.dtype, arguments: dict[str, Any]) -> str:
    """The profiler range of one launch: optimizer, path, dtype and the switches that are on,
    e.g. ``tritonopt.SGD/triton/float32/nesterov`` (shown in Chrome traces, and in Nsight
    under ``torch.autograd.profiler.emit_nvtx``). Built only while a profiler runs."""
    switches = "+".join(key for key, value in arguments.items() if value is True) or "plain"
    path = "triton" if on_triton else "torch"
    return f"tritonopt.{type(optimizer).__name__}/{path}/{str(dtype).removeprefix('torch.')}/{switches}"


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device, non_blocking=True)


def _state_in_place(
    bucket: FlatBucket, keys: tuple[str, ...], has_grad: list[bool], param_entries: list[dict[str, Any] | None]
) -> bool:
    """The steady state: every parameter with a gradient holds the bucket's own views."""
    if not all(_views(bucket, key) for key in keys):
        return False
    if all(has_grad):
        # Every parameter has state: compare whole columns with C-level iteration.
        try:
            return all(
                all(map(is_, map(itemgetter(key), param_entries), _views(bucket, key))) for key in keys
            )
        except (TypeError, KeyError):  # a parameter without state (None) or without this key
            return False
    return all(
        not grad or (entry is not None and entry.get(key) is view)
        for key in keys
        for grad, entry, view in zip(has_grad, param_entries, _views(bucket, key))
    )


def _views(bucket: FlatBucket, key: str) -> list[torch.Tensor]:
    return bucket.step_views if key == "step" else bucket.state_views.get(key, [])


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
