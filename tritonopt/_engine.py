"""The engine: a ``torch.optim.Optimizer`` whose step is one launch per (device, dtype).

A concrete optimizer declares its update functions (a Triton kernel launcher
and a plain-torch one with the same contract), the per-element state buffers a
group's step uses (``_state_buffers``), whether it counts steps per parameter
(``counts_steps``), when a parameter's state starts afresh (``_fresh``), the
launch-wide switches a group sets (``_switches``) and how a group's
hyperparameters become one row of the launch's hyperparameter table
(``_hyperparameters``). The engine owns the state buffers (``_bucket``), their
exposure through ``self.state`` and ``state_dict``, step counts, GradScaler's
scale and inf flag, checks of what users hand it, and the launches.

Parameters and gradients are updated where they live; nothing here moves them.
"""

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not, itemgetter
from typing import Any, ClassVar, NamedTuple

import torch
from torch._C._autograd import _profiler_enabled
from torch.autograd.profiler import record_function
from torch.distributed.tensor import DTensor
from torch.optim import Optimizer

from . import _backend, _fallback, _storage
from ._bucket import Bucket, is_dense, local, real
from .kernels._blocks import BlockTable

_GRAD = attrgetter("grad")


@dataclass
class _Launch:
    """The tensors of one launch, one list per buffer, and each tensor's hyperparameter row."""

    device: torch.device
    dtype: torch.dtype
    switches: dict[str, bool]
    state_keys: tuple[str, ...]
    params: list[torch.Tensor] = field(default_factory=list)
    grads: list[torch.Tensor] = field(default_factory=list)
    state: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    rows: list[int] = field(default_factory=list)
    hyperparameters: list[NamedTuple] = field(default_factory=list)
    streams: list[int] = field(default_factory=list)
    steps: list[torch.Tensor] = field(default_factory=list)  # device step counts (capturable)

    def add(self, bucket: Bucket, grads: list, has_grad: list[bool], steps: bool = False) -> None:
        """Append the bucket's tensors whose parameter has a gradient (and their device
        step counts with ``steps``); a whole bucket by C-level list extensions."""
        every = all(has_grad)

        def chosen(column):
            return column if every else compress(column, has_grad)

        self.params.extend(chosen(bucket.kernel_params))
        self.streams.extend(chosen(bucket.streams))
        self.grads.extend(chosen(grads))
        for key in self.state_keys:
            self.state[key].extend(chosen(bucket.kernel_views[key]))
        if steps:
            self.steps.extend(chosen(bucket.step_views))


class FlatOptimizer(Optimizer):
    """Base of tritonopt's optimizers (see ``tritonopt.SGD`` for the user-facing contract)."""

    # --- what a concrete optimizer declares ---------------------------------------
    kernel_update: ClassVar[Callable[..., None]]
    """The Triton launcher: ``(params, grads, *state_lists, rows=, hyperparameters=, **switches, ...)``."""
    torch_update: ClassVar[Callable[..., None]]
    """The plain-torch update with the same contract, for CPU tensors without the kernels."""
    state_buffer_keys: ClassVar[tuple[str, ...]] = ()
    """Every per-element state key the optimizer keeps, in the update's argument order."""
    counts_steps: ClassVar[bool] = False
    """Whether ``state[p]['step']`` counts each parameter's steps."""
    torch_step: ClassVar[Callable[..., None]]
    """torch's own step for some parameters of a group, ``(optimizer, group, params)``
    (``_fallback``): what the launch cannot do (differentiable, sparse, other devices)."""

    def _state_buffers(self, group: dict[str, Any]) -> tuple[str, ...]:
        """The keys of ``state_buffer_keys`` a step of ``group`` reads and writes."""
        raise NotImplementedError

    def _fresh(self, entry: dict[str, Any]) -> bool:
        """Whether a parameter's state is (re)created zeroed at this step, as torch does."""
        return not entry

    def _switches(self, group: dict[str, Any]) -> dict[str, bool]:
        """The update's code-path keywords for ``group``; groups that differ launch apart."""
        raise NotImplementedError

    def _hyperparameters(self, group: dict[str, Any], fresh: bool, step: float | None) -> NamedTuple:
        """The hyperparameter row of ``group``'s parameters that are ``fresh`` (as ``_fresh``
        said) and take step number ``step`` (None unless ``counts_steps``)."""
        raise NotImplementedError

    def _check_fused(self, group: dict[str, Any], entries: dict[int, dict[str, Any]]) -> None:
        """torch's ``fused=True`` device and dtype check, where and when torch makes it."""
        raise NotImplementedError

    # --- torch.optim.Optimizer API ----------------------------------------------
    def __init__(self, params: Any, defaults: dict[str, Any]) -> None:
        self._reset_buckets()
        super().__init__(params, defaults)
        # GradScaler passes its scale and inf flag (as ``grad_scale``/``found_inf``)
        # instead of unscaling and checking the gradients itself.
        self._step_supports_amp_scaling = True

    def _reset_buckets(self) -> None:
        self._buckets: list[list[Bucket] | None] = []
        self._group_params: list[list[torch.Tensor]] = []
        self._torch_params: list[list[torch.Tensor]] = []
        self._tables: dict[tuple, BlockTable] = {}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        params = [] if group.get("differentiable") else _fallback.split(group)[0]
        try:
            _storage.check_group(group)
            _check_params(params)
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise
        # Pack once: a parameter whose elements do not fill one span of memory (a
        # strided slice) gets dense storage of its own; every other one stays put.
        for p in params:
            if not is_dense(local(p)):
                p.data = p.detach().clone(memory_format=torch.contiguous_format)

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._reset_buckets()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's; the loaded state is checked against the parameters before anything
        changes, then copied into tritonopt's state buffers."""
        params = self._check_loaded_state(state_dict)
        super().load_state_dict(state_dict)
        # torch casts loaded state to the parameter's dtype; state kept in another dtype
        # (``state_dtype``) is taken as saved instead, and rounded once into its buffer.
        groups = {id(p): group for group in self.param_groups for p in group["params"]}
        for saved_id, entry in state_dict.get("state", {}).items():
            p = params.get(saved_id)
            if p is None or not isinstance(entry, dict) or groups[id(p)].get("state_dtype") is None:
                continue
            for key in self.state_buffer_keys:
                if isinstance(entry.get(key), torch.Tensor) and key != "compensation":
                    self.state[p][key] = entry[key].to(device=p.device)
        for index in range(len(self.param_groups)):
            self._group_buckets(index)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Perform one optimization step; ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._update()
        return loss

    # --- engine -----------------------------------------------------------------
    @torch._disable_dynamo
    def _update(self) -> None:
        """Every group's update, in one launch per (device, dtype, switches).

        The checks that can raise run group by group before any launch; traced code
        (``torch.compile``) breaks its graph here and runs the launch eagerly.
        """
        entries = self._state_entries()
        prepared = []
        try:
            for index, group in enumerate(self.param_groups):
                if group.get("fused"):
                    self._check_fused(group, entries)
                buckets = self._group_buckets(index)
                torch_params = list(self._torch_params[index])
                group_prepared = []
                for bucket in buckets:
                    grads, has_grad, fresh, sparse = self._prepare_bucket(group, bucket, entries)
                    group_prepared.append((group, bucket, grads, has_grad, fresh))
                    torch_params += sparse
                if torch_params:
                    self._torch_update(group, torch_params)
                prepared += group_prepared
        finally:
            # torch updates group by group: when a group raises, the groups before it
            # have taken their step. So do they here, in one launch.
            self._launch(prepared)
            _storage.advance_random_streams(group for group, *_ in prepared)

    def _torch_update(self, group: dict[str, Any], params: list[torch.Tensor]) -> None:
        """torch's own step for ``params`` of ``group``, with autograd on as torch's
        ``step`` has it (``differentiable`` in the defaults)."""
        with torch.set_grad_enabled(bool(self.defaults.get("differentiable", False))):
            type(self).torch_step(self, group, params)

    def _launch(self, prepared: list[tuple]) -> None:
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        launches: dict[tuple, _Launch] = {}
        for group, bucket, grads, has_grad, fresh in prepared:
            self._add_to_launch(launches, group, bucket, grads, has_grad, fresh)
        for key, launch in launches.items():
            self._run(key, launch, grad_scale, found_inf)
        if self.counts_steps and found_inf is not None:
            for _, bucket, _, has_grad, _ in prepared:
                if not any(has_grad):
                    continue
                if bucket.capturable:
                    bucket.retract_on_device(has_grad, _on(found_inf, bucket.device))
                else:
                    bucket.retract_steps(has_grad, _on(found_inf, bucket.device))

    def _group_buckets(self, index: int) -> list[Bucket]:
        """The buckets of group ``index``, rebuilt (state carried over) if its parameters
        changed: another list, or a parameter's dtype, device or layout. The group's
        parameters that torch's path updates are ``self._torch_params[index]``."""
        self._buckets.extend([None] * (len(self.param_groups) - len(self._buckets)))
        self._group_params.extend([[]] * (len(self.param_groups) - len(self._group_params)))
        self._torch_params.extend([[]] * (len(self.param_groups) - len(self._torch_params)))
        group = self.param_groups[index]
        params = group["params"]
        if group.get("differentiable"):
            # A per-step switch: nothing is cached, so switching it off rebuilds the
            # buckets and adopts the state torch's path kept.
            self._buckets[index], self._torch_params[index] = None, list(params)
            return []
        buckets = self._buckets[index]
        known = self._group_params[index]
        capturable = bool(group.get("capturable"))
        if (
            buckets is not None
            and len(params) == len(known)
            and all(map(is_, params, known))
            and all(bucket.capturable == capturable and bucket.follow() for bucket in buckets)
            and all(
                bucket.state_dtypes == _storage.state_dtypes(group, self.state_buffer_keys, bucket.dtype)
                for bucket in buckets
            )
        ):
            return buckets
        kernel_params, torch_params = _fallback.split(group)
        _check_params(kernel_params)
        by_device_dtype: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in kernel_params:
            by_device_dtype.setdefault((p.device, p.dtype), []).append(p)
        entries = self._state_entries()
        streams = _storage.stream_ids(self.param_groups, index)
        buckets = [
            Bucket(bucket_params, capturable, _storage.state_dtypes(group, self.state_buffer_keys, bucket_params[0].dtype))
            for bucket_params in by_device_dtype.values()
        ]
        for bucket in buckets:
            bucket.streams = [streams[id(p)] for p in bucket.params]
            self._adopt_state(bucket, entries)
        self._buckets[index] = buckets
        self._group_params[index] = list(params)
        self._torch_params[index] = torch_params
        return buckets

    def _state_entries(self) -> dict[int, dict[str, Any]]:
        """``self.state`` keyed by ``id(param)``.

        A tensor-keyed lookup calls the Python-level ``Tensor.__hash__``; on the
        per-step path, building this map and integer lookups (all C-level
        iteration) cost a fraction of that per parameter.
        """
        return dict(zip(map(id, self.state), self.state.values()))

    def _bucket_keys(self) -> tuple[str, ...]:
        return self.state_buffer_keys + ("step",) if self.counts_steps else self.state_buffer_keys

    def _adopt_state(self, bucket: Bucket, entries: dict[int, dict[str, Any]]) -> None:
        """Move state tensors that live outside the bucket (loaded, or from an older
        bucket) into it, and expose its views in their place."""
        for index, p in enumerate(bucket.params):
            entry = entries.get(id(p))
            if entry:
                keys = [key for key in self._bucket_keys() if entry.get(key) is not None]
                self._adopt_entry(bucket, index, p, entry, keys)

    def _adopt_entry(
        self, bucket: Bucket, index: int, param: torch.Tensor, entry: dict[str, Any], keys: list[str]
    ) -> None:
        """Make ``entry[key]`` the bucket's view for each of ``keys``, copying foreign values in.

        A capturable bucket of an optimizer without step counts of its own (SGD)
        counts its buffers' steps on the device: a buffer carried in has started."""
        for key in keys:
            value = entry[key]
            view = bucket.step_view(index) if key == "step" else bucket.state_views(key)[index]
            if value is not view:
                if key == "step":
                    view.copy_(value) if isinstance(value, torch.Tensor) else view.fill_(float(value))
                else:
                    _check_state_tensor(key, value, param)
                    local(view).copy_(local(value))
                    if bucket.capturable and not self.counts_steps:
                        bucket.step_view(index).fill_(1)
                entry[key] = view

    def _check_loaded_state(self, state_dict: dict[str, Any]) -> dict[Any, torch.Tensor]:
        """Per-element state of a parameter's shape, checked as torch maps saved ids to
        parameters; returns that map."""
        saved_groups = state_dict.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups) or any(
            len(saved["params"]) != len(group["params"]) for saved, group in zip(saved_groups, self.param_groups)
        ):
            return {}  # torch raises its own error for this
        params = dict(
            zip(
                chain.from_iterable(saved["params"] for saved in saved_groups),
                chain.from_iterable(group["params"] for group in self.param_groups),
            )
        )
        for saved_id, entry in state_dict.get("state", {}).items():
            if saved_id in params and isinstance(entry, dict):
                for key in self.state_buffer_keys:
                    if entry.get(key) is not None:
                        _check_state_tensor(key, entry[key], params[saved_id])
        return params

    def _prepare_bucket(
        self, group: dict[str, Any], bucket: Bucket, entries: dict[int, dict[str, Any]]
    ) -> tuple[list[torch.Tensor | None], list[bool], list[bool], list[torch.Tensor]]:
        """The bucket's gradients as the update reads them (None where a parameter has
        none), which parameters the launch updates (those with a dense gradient), which
        start their state at this step, and the parameters whose gradient is sparse
        (torch's path steps them)."""
        grads = list(map(_GRAD, bucket.params))
        if len(grads) == len(bucket.checked_grads) and all(map(is_, grads, bucket.checked_grads)):
            # The gradients of the last step, left in place (zero_grad(set_to_none=False)).
            grads, has_grad, sparse = bucket.kernel_grads, bucket.has_grad, bucket.sparse
        else:
            has_grad = list(map(is_not, grads, repeat(None)))
            sparse_indices = _check_grads(bucket, grads, has_grad)
            sparse = bucket.sparse = [bucket.params[i] for i in sparse_indices]
            dense = grads
            if sparse_indices:
                dense = list(grads)
                for i in sparse_indices:
                    dense[i], has_grad[i] = None, False
            kernel_grads = _kernel_grads(bucket, dense, has_grad)
            # Only gradients read as they are can be trusted by identity next step: a copy
            # or view would miss autograd accumulating into, or re-pointing, the original.
            bucket.checked_grads = grads if kernel_grads is dense else []
            grads = bucket.kernel_grads = kernel_grads
            bucket.has_grad = has_grad
        keys = _storage.bucket_keys(self._state_buffers(group), group, bucket.dtype)
        no_fresh = [False] * len(has_grad)
        if not (keys or self.counts_steps):
            return grads, has_grad, no_fresh, sparse
        param_entries = list(map(entries.get, map(id, bucket.params)))
        step_keys = keys + ("step",) if self.counts_steps else keys
        if _state_in_place(bucket, step_keys, has_grad, param_entries):
            return grads, has_grad, no_fresh, sparse
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
                    entry[key] = bucket.state_views(key)[index]
                    local(entry[key]).zero_()
                if self.counts_steps:
                    entry["step"] = bucket.step_view(index).zero_()
                elif bucket.capturable:
                    bucket.step_view(index).zero_()  # the buffers' own count (see _adopt_entry)
            else:
                if "compensation" in keys and entry.get("compensation") is None:
                    # What rounding lost starts at zero: state from torch, or from nearest rounding.
                    entry["compensation"] = bucket.state_views("compensation")[index]
                    local(entry["compensation"]).zero_()
                missing = [key for key in step_keys if key not in entry]
                if missing:
                    raise KeyError(missing[0])  # torch's state lookup raises the same
                self._adopt_entry(bucket, index, p, entry, list(step_keys))
            fresh.append(is_fresh)
        return grads, has_grad, fresh, sparse

    def _add_to_launch(
        self,
        launches: dict[tuple, _Launch],
        group: dict[str, Any],
        bucket: Bucket,
        grads: list[torch.Tensor | None],
        has_grad: list[bool],
        fresh: list[bool],
    ) -> None:
        """Append the bucket's parameters with a gradient to their launch, with their rows."""
        if not any(has_grad):
            return
        keys = _storage.bucket_keys(self._state_buffers(group), group, bucket.dtype)
        switches = self._switches(group) | _storage.switches(group, bucket)
        dtype = bucket.kernel_params[0].dtype
        key = (bucket.device, dtype, tuple(switches.items()), keys)
        launch = launches.get(key)
        if launch is None:
            launch = launches[key] = _Launch(bucket.device, dtype, switches, keys, state={k: [] for k in keys})
        if bucket.capturable:
            self._add_capturable(launch, group, bucket, grads, has_grad, keys)
            return
        steps = bucket.advance_steps(has_grad) if self.counts_steps else repeat(None)
        rows: dict[tuple[bool, float | None], int] = {}
        if all(has_grad) and not any(fresh) and (not self.counts_steps or steps.count(steps[0]) == len(steps)):
            # The steady state: the whole bucket, one row, C-level list extensions.
            row = len(launch.hyperparameters)
            launch.hyperparameters.append(
                _storage.with_random_stream(group, self._hyperparameters(group, False, steps[0] if self.counts_steps else None))
            )
            launch.add(bucket, grads, has_grad)
            launch.rows.extend(repeat(row, len(grads)))
            return
        for grad, is_fresh, step in zip(has_grad, fresh, steps):
            if grad and (is_fresh, step) not in rows:
                rows[is_fresh, step] = len(launch.hyperparameters)
                launch.hyperparameters.append(_storage.with_random_stream(group, self._hyperparameters(group, is_fresh, step)))
            if grad:
                launch.rows.append(rows[is_fresh, step])
        launch.add(bucket, grads, has_grad)

    def _add_capturable(
        self,
        launch: _Launch,
        group: dict[str, Any],
        bucket: Bucket,
        grads: list[torch.Tensor | None],
        has_grad: list[bool],
        keys: tuple[str, ...],
    ) -> None:
        """``_add_to_launch`` for a capturable group: step counts are counted on the device
        and read by the kernel, so the group's one row never depends on them."""
        counted = self.counts_steps or bool(keys)
        if counted:
            bucket.count_on_device(has_grad)
        row = len(launch.hyperparameters)
        launch.hyperparameters.append(self._hyperparameters(group, False, None))
        launch.rows.extend(repeat(row, has_grad.count(True)))
        launch.add(bucket, grads, has_grad, steps=counted)

    def _run(
        self, key: tuple, launch: _Launch, grad_scale: torch.Tensor | None, found_inf: torch.Tensor | None
    ) -> None:
        on_triton = _backend.uses_triton(launch.device)
        update = self.kernel_update if on_triton else self.torch_update
        state = [launch.state.get(k) for k in self.state_buffer_keys]
        # A range costs ~10 us even when nothing records it: only build one when profiling.
        range_name = _profiler_enabled() and _launch_name(self, on_triton, launch)
        device_guard = torch.cuda.device(launch.device) if launch.device.type == "cuda" else nullcontext()
        with device_guard, record_function(range_name) if range_name else nullcontext():
            update(
                launch.params,
                launch.grads,
                *state,
                rows=launch.rows,
                hyperparameters=launch.hyperparameters,
                **launch.switches,
                streams=launch.streams,
                steps=launch.steps or None,
                grad_scale=_on(grad_scale, launch.device),
                found_inf=_on(found_inf, launch.device),
                table=self._tables.setdefault(key, BlockTable()),
            )


def _launch_name(optimizer: Optimizer, on_triton: bool, launch: _Launch) -> str:
    """The profiler range of one launch: optimizer, path, dtype and the switches that are on,
    e.g. ``tritonopt.SGD/triton/float32/nesterov`` (shown in Chrome traces, and in Nsight
    under ``torch.autograd.profiler.emit_nvtx``). Built only while a profiler runs."""
    switches = "+".join(key for key, value in launch.switches.items() if value is True) or "plain"
    path = "triton" if on_triton else "torch"
    return f"tritonopt.{type(optimizer).__name__}/{path}/{str(launch.dtype).removeprefix('torch.')}/{switches}"


def _on(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device, non_blocking=True)


def _state_in_place(
    bucket: Bucket, keys: tuple[str, ...], has_grad: list[bool], param_entries: list[dict[str, Any] | None]
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


def _views(bucket: Bucket, key: str) -> list[torch.Tensor]:
    return bucket.step_views if key == "step" else bucket.views.get(key, [])


def _check_params(params: list[torch.Tensor]) -> None:
    """Reject what tritonopt cannot update, before anything is moved."""
    meshes = {p.device_mesh for p in params if isinstance(p, DTensor)}
    if len(meshes) > 1:
        raise ValueError(
            f"a parameter group mixes DTensors of {len(meshes)} device meshes; "
            "put the parameters of each mesh in a group of its own"
        )
    for index, p in enumerate(params):
        if not (p.is_floating_point() or p.is_complex()):
            raise TypeError(
                f"parameter {index} has dtype {p.dtype}; only floating-point and complex "
                "tensors can be optimized"
            )
        if not p.is_leaf:
            raise ValueError("can't optimize a non-leaf Tensor")


def _check_grads(bucket: Bucket, grads: list[torch.Tensor | None], has_grad: list[bool]) -> list[int]:
    """Gradients the update can read: of their parameter's shape, dtype and device.
    Returns the indices of sparse gradients (torch's path steps those parameters)."""
    present = list(compress(grads, has_grad))
    if (
        list(map(attrgetter("shape"), present)) == list(compress(bucket.shapes, has_grad))
        and all(map(is_, map(attrgetter("dtype"), present), repeat(bucket.dtype)))
        and all(map(torch.device.__eq__, map(attrgetter("device"), present), repeat(bucket.device)))
        and not any(map(attrgetter("is_sparse"), present))
    ):
        return []
    sparse = []
    for index, (p, grad) in enumerate(zip(bucket.params, grads)):
        if grad is None:
            continue
        if grad.is_sparse:
            sparse.append(index)
            continue
        if grad.shape != p.shape or grad.dtype != p.dtype or grad.device != p.device:
            raise RuntimeError(
                f"gradient of shape {tuple(grad.shape)}, {grad.dtype} on {grad.device} does not "
                f"match its parameter of shape {tuple(p.shape)}, {p.dtype} on {p.device}"
            )
    return sparse


def _kernel_grads(
    bucket: Bucket, grads: list[torch.Tensor | None], has_grad: list[bool]
) -> list[torch.Tensor | None]:
    """The gradients as the update reads them: real local tensors laid out as their parameter.

    Gradients autograd made already are (its layout contract); a gradient set by
    hand in another layout is read through a copy in the parameter's layout.
    """
    if not bucket.distributed and not bucket.dtype.is_complex:
        if list(map(torch.Tensor.stride, compress(grads, has_grad))) == list(compress(bucket.strides, has_grad)):
            return grads
    kernel_grads: list[torch.Tensor | None] = []
    for grad, param_local, stride in zip(grads, bucket.locals, bucket.strides):
        if grad is not None:
            grad = local(grad)
            if grad.stride() != stride and grad.numel() > 1:
                grad = torch.empty_like(param_local).copy_(grad)
            grad = real(grad)
        kernel_grads.append(grad)
    return kernel_grads


def _check_state_tensor(key: str, value: Any, param: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor) or value.shape != param.shape:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(
            f"optimizer state {key!r} of shape {shape} does not match its parameter "
            f"of shape {tuple(param.shape)}"
        )

