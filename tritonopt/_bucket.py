"""Optimizer state for the parameters of one param group that share (device, dtype).

Parameters stay where their owner keeps them (the module, FSDP2's shards,
ZeRO's or DDP's buckets); a :class:`Bucket` holds what tritonopt owns for them:
one flat buffer per per-element state key (``momentum_buffer``, ``exp_avg``,
...) whose views are what ``optimizer.state[p]`` shows, and one buffer of
per-parameter step counts: on the host, or for a capturable group on the
parameters' device, where the step counts them without a host read. Views start on multiples of ``ALIGNMENT`` elements,
so every state view is 16-byte aligned and the kernels' vector path applies.

DTensor parameters (FSDP2) are updated through their local shards: their state
views have the local shard's shape and are shown as DTensors with the
parameter's mesh and placements, as torch's optimizers keep them.
"""

from operator import attrgetter

import torch
from torch.distributed.tensor import DTensor

from .kernels._blocks import upload

ALIGNMENT = 16
LOCAL = attrgetter("_local_tensor")


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor a kernel updates: a DTensor's local shard, else the tensor itself."""
    return tensor._local_tensor if isinstance(tensor, DTensor) else tensor


def real(tensor: torch.Tensor) -> torch.Tensor:
    """Complex tensors are updated as interleaved real and imaginary parts."""
    return torch.view_as_real(tensor) if tensor.is_complex() else tensor


def dense_strides(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's own strides when it is dense (any permutation), else contiguous ones."""
    return torch.empty_like(tensor, device="meta", memory_format=torch.preserve_format).stride()


def is_dense(tensor: torch.Tensor) -> bool:
    """Whether the tensor's elements fill one span of memory with no gaps or overlaps."""
    return tensor.stride() == dense_strides(tensor) or tensor.numel() <= 1


def scalar_dtype() -> torch.dtype:
    """torch's dtype for step counts: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


class Bucket:
    """State of the parameters of one group on one (device, dtype).

    ``locals`` are the tensors the update writes (DTensors' shards); ``views[key]``
    the state tensors exposed in ``optimizer.state`` and ``kernel_views[key]``
    their dense real local views, in parameter order.
    """

    def __init__(
        self, params: list[torch.Tensor], capturable: bool = False, state_dtypes: dict[str, torch.dtype] | None = None
    ):
        self.params = params
        self.capturable = capturable
        # Storage dtype of state keys kept in another dtype than the parameters'.
        self.state_dtypes = state_dtypes or {}
        self.streams: list[int] = [0] * len(params)  # each parameter's random stream (stochastic rounding)
        self.distributed = any(isinstance(p, DTensor) for p in params)
        self.locals = list(map(local, params))
        self.device = self.locals[0].device
        self.dtype = self.locals[0].dtype
        self.shapes = [p.shape for p in params]
        self.local_shapes = [t.shape for t in self.locals]
        self.strides = list(map(torch.Tensor.stride, self.locals))
        for index, tensor in enumerate(self.locals):
            _check_storage(index, tensor)
        self.data_ptrs = list(map(torch.Tensor.data_ptr, self.locals))
        self.offsets: list[int] = []
        end = 0
        for tensor in self.locals:
            self.offsets.append(end)
            end = -(-(end + tensor.numel()) // ALIGNMENT) * ALIGNMENT
        self.numel = end
        self.flat_state: dict[str, torch.Tensor] = {}
        self.views: dict[str, list[torch.Tensor]] = {}
        self.kernel_views: dict[str, list[torch.Tensor]] = {}
        self.flat_steps: torch.Tensor | None = None
        self.step_views: list[torch.Tensor] = []
        self._counted: tuple[list[bool], torch.Tensor] | None = None  # has_grad, and as a device mask
        self._captured: list[torch.Tensor] = []  # masks a CUDA graph's replays read
        self.kernel_params = [real(t) for t in self.locals]
        # The gradients last checked (``p.grad`` objects), and as the update reads them.
        self.checked_grads: list[torch.Tensor | None] = []
        self.kernel_grads: list[torch.Tensor | None] = []
        self.has_grad: list[bool] = []
        self.sparse: list[torch.Tensor] = []  # parameters whose last checked gradient is sparse

    def follow(self) -> bool:
        """Follow parameters whose storage moved (ZeRO's bucket views, FSDP2, ``p.data = ...``
        with the same dtype, device, shape and layout): the update writes them where
        they now are. False when the bucket must be rebuilt instead (any of those changed)."""
        locals_ = list(map(LOCAL, self.params)) if self.distributed else self.params
        data_ptrs = list(map(torch.Tensor.data_ptr, locals_))
        if data_ptrs == self.data_ptrs and list(map(torch.Tensor.stride, locals_)) == self.strides:
            return True
        for index, (tensor, shape, stride) in enumerate(zip(locals_, self.local_shapes, self.strides)):
            if tensor.dtype != self.dtype or tensor.device != self.device:
                return False
            if tensor.shape != shape or (tensor.stride() != stride and tensor.numel() > 1):
                return False
            _check_storage(index, tensor)
        self.locals = list(locals_)
        self.kernel_params = [real(t) for t in self.locals]
        self.data_ptrs = data_ptrs
        return True

    def state_views(self, key: str) -> list[torch.Tensor]:
        """The exposed views of ``key``'s flat buffer, allocating the buffer once (zeroed)."""
        if key not in self.flat_state:
            flat = torch.zeros(self.numel, dtype=self.state_dtypes.get(key, self.dtype), device=self.device)
            views = [
                flat.as_strided(t.shape, stride, offset)
                for t, stride, offset in zip(self.locals, self.strides, self.offsets)
            ]
            self.flat_state[key] = flat
            self.kernel_views[key] = [real(v) for v in views]
            self.views[key] = [_like(p, v) for p, v in zip(self.params, views)] if self.distributed else views
        return self.views[key]

    def step_view(self, index: int) -> torch.Tensor:
        """Parameter ``index``'s step count, a 0-dim view of one buffer for the bucket.

        Counts live on the CPU in torch's scalar dtype, as torch keeps them for
        non-fused optimizers: reading them to choose a launch's bias corrections
        costs no device sync. A capturable bucket keeps them on the parameters'
        device, as torch's capturable optimizers do; the kernels read them there.
        """
        if self.flat_steps is None:
            device = self.device if self.capturable else "cpu"
            self.flat_steps = torch.zeros(len(self.params), dtype=scalar_dtype(), device=device)
            self.step_views = list(self.flat_steps.unbind())
        return self.step_views[index]

    def count_on_device(self, has_grad: list[bool]) -> None:
        """Count one step for each parameter with a gradient, on the device (capturable):
        one in-place add, whose mask is uploaded only when ``has_grad`` changes."""
        self.step_view(0)
        if all(has_grad):
            self.flat_steps.add_(1)
        else:
            self.flat_steps.add_(self._mask(has_grad))

    def retract_on_device(self, has_grad: list[bool], found_inf: torch.Tensor) -> None:
        """Take back the counted step where GradScaler skipped it, on the device:
        ``found_inf`` (1.0 or 0.0) is subtracted, never read."""
        if all(has_grad):
            self.flat_steps.sub_(found_inf)
        else:
            self.flat_steps.addcmul_(self._mask(has_grad), found_inf, value=-1)

    def _mask(self, has_grad: list[bool]) -> torch.Tensor:
        if self._counted is None or self._counted[0] != has_grad:
            mask = torch.tensor(has_grad, dtype=self.flat_steps.dtype)
            self._counted = (list(has_grad), upload(mask, self.device, self._captured))
        return self._counted[1]

    def advance_steps(self, has_grad: list[bool]) -> list[float]:
        """Count one step for each parameter with a gradient; every parameter's count."""
        self.step_view(0)
        if all(has_grad):
            self.flat_steps += 1
        else:
            self.flat_steps[torch.tensor(has_grad)] += 1
        return self.flat_steps.tolist()

    def retract_steps(self, has_grad: list[bool], found_inf: torch.Tensor) -> None:
        """Take back the counted step where GradScaler skipped it (``found_inf`` nonzero)."""
        self.flat_steps[torch.tensor(has_grad)] -= found_inf.to(self.flat_steps)


def _check_storage(index: int, tensor: torch.Tensor) -> None:
    """A parameter's storage must hold every element its view addresses."""
    if tensor.numel() == 0:
        return
    last = tensor.storage_offset() + sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride()))
    needed = (last + 1) * tensor.element_size()
    available = tensor.untyped_storage().nbytes()
    if available < needed:
        raise RuntimeError(
            f"parameter {index} of shape {tuple(tensor.shape)} addresses {needed} bytes of its storage, "
            f"which holds {available}: its storage shrank under it; nothing was updated"
        )


def _like(param: DTensor, shard: torch.Tensor) -> DTensor:
    """A state shard shown as a DTensor laid out as its parameter."""
    return DTensor.from_local(
        shard, param.device_mesh, param.placements, run_check=False, shape=param.shape, stride=param.stride()
    )
