"""Flat storage for the parameters of one param group that share (device, dtype).

A :class:`FlatBucket` owns one contiguous buffer for the parameters, one for
their gradients and one per optimizer-state key. Each parameter's ``.data``
becomes a view into the parameter buffer with the parameter's own shape and
strides, so an optimizer step over the whole bucket is one elementwise pass.
Segments start at multiples of ``ALIGNMENT`` elements so that every launch
starts on an aligned address; the padding between them stays zero.
"""

from dataclasses import dataclass
from operator import attrgetter, is_

import torch

ALIGNMENT = 16
_GRAD = attrgetter("grad")


@dataclass
class Segment:
    """A contiguous span of a bucket's flat buffers, as real 1-D tensors."""

    params: torch.Tensor
    grads: torch.Tensor
    state: dict[str, torch.Tensor]


def _dense_strides(tensor: torch.Tensor) -> tuple[int, ...]:
    """The tensor's own strides when it is dense (any permutation), else contiguous ones."""
    return torch.empty_like(tensor, device="meta", memory_format=torch.preserve_format).stride()


def _real_1d(flat: torch.Tensor) -> torch.Tensor:
    """Complex buffers are updated as interleaved real and imaginary parts."""
    return torch.view_as_real(flat).view(-1) if flat.is_complex() else flat


class FlatBucket:
    """Parameters of one group and one (device, dtype), flattened into shared buffers.

    Per-element optimizer state (``momentum_buffer``, ``exp_avg``, ...) gets a flat
    buffer per key on first use, and per-parameter step counts one host buffer.
    """

    def __init__(self, params: list[torch.Tensor]):
        self.params = params
        self.device = params[0].device
        self.dtype = params[0].dtype
        self.offsets: list[int] = []
        self.strides = [_dense_strides(p) for p in params]
        end = 0
        for p in params:
            self.offsets.append(end)
            end = -(-(end + p.numel()) // ALIGNMENT) * ALIGNMENT
        self.numel = end
        self.flat_params = self._new_buffer()
        self.flat_grads = self._new_buffer()
        self.grad_views = self._views_of(self.flat_grads)
        self.flat_state: dict[str, torch.Tensor] = {}
        self.state_views: dict[str, list[torch.Tensor]] = {}
        self.flat_steps: torch.Tensor | None = None
        self.whole_segment: Segment | None = None
        self.step_views: list[torch.Tensor] = []
        for p, view in zip(params, self._views_of(self.flat_params)):
            view.copy_(p.detach())
            p.data = view
        self.data_ptrs = [p.data_ptr() for p in params]

    def _new_buffer(self) -> torch.Tensor:
        return torch.zeros(self.numel, dtype=self.dtype, device=self.device)

    def _views_of(self, flat: torch.Tensor) -> list[torch.Tensor]:
        return [
            flat.as_strided(p.shape, stride, offset)
            for p, stride, offset in zip(self.params, self.strides, self.offsets)
        ]

    def state_view(self, key: str, index: int) -> torch.Tensor:
        """The view of ``key``'s flat buffer for parameter ``index``, allocating the buffer once."""
        if key not in self.flat_state:
            self.flat_state[key] = self._new_buffer()
            self.state_views[key] = self._views_of(self.flat_state[key])
            self.whole_segment = None
        return self.state_views[key][index]

    def step_view(self, index: int) -> torch.Tensor:
        """Parameter ``index``'s step count, a 0-dim view of one host buffer for the bucket.

        Counts live on the CPU in torch's scalar dtype, as torch keeps them for
        non-fused optimizers: reading them to pick a launch costs no device sync.
        """
        if self.flat_steps is None:
            self.flat_steps = torch.zeros(len(self.params), dtype=_scalar_dtype())
            self.step_views = list(self.flat_steps.unbind())
        return self.step_views[index]

    def advance_steps(self, has_grad: list[bool]) -> list[float | None]:
        """Count one step for each parameter with a gradient; their new counts (None elsewhere)."""
        self.step_view(0)
        if all(has_grad):
            self.flat_steps += 1
        else:
            self.flat_steps[torch.tensor(has_grad)] += 1
        return [count if grad else None for count, grad in zip(self.flat_steps.tolist(), has_grad)]

    def retract_steps(self, has_grad: list[bool], found_inf: torch.Tensor) -> None:
        """Take back the counted step where GradScaler skipped it (``found_inf`` nonzero)."""
        self.flat_steps[torch.tensor(has_grad)] -= found_inf.to(self.flat_steps)

    def is_current(self) -> bool:
        """False when a parameter no longer aliases this bucket (``p.data = ...``, ``module.to``)."""
        return list(map(torch.Tensor.data_ptr, self.params)) == self.data_ptrs and list(
            map(torch.Tensor.stride, self.params)
        ) == self.strides

    def gather_grads(self) -> list[bool]:
        """Move gradients that live elsewhere into the flat gradient buffer.

        Returns which parameters have a gradient. Gradients already in the buffer
        (autograd accumulates in place into an existing ``.grad``) cost nothing;
        the others are copied with one batched ``_foreach_copy_`` and the
        parameter's ``.grad`` is re-pointed at its view.
        """
        grads = list(map(_GRAD, self.params))
        in_place = list(map(is_, grads, self.grad_views))
        if all(in_place):
            return in_place
        moved = [i for i, (g, done) in enumerate(zip(grads, in_place)) if g is not None and not done]
        for i in moved:
            _check_grad(self.params[i], grads[i])
        if moved:
            torch._foreach_copy_([self.grad_views[i] for i in moved], [grads[i] for i in moved])
            for i in moved:
                self.params[i].grad = self.grad_views[i]
        return [g is not None for g in grads]

    def zero_grads(self) -> None:
        """``zero_grad(set_to_none=False)``: one fill for the gradients in the buffer."""
        for p, view in zip(self.params, self.grad_views):
            grad = p.grad
            if grad is not None and grad is not view:
                if grad.grad_fn is not None:
                    grad.detach_()
                else:
                    grad.requires_grad_(False)
                grad.zero_()
        self.flat_grads.zero_()

    def segment(self, start: int, stop: int) -> Segment:
        """Real 1-D slices covering parameters ``start`` to ``stop - 1`` and their padding.

        Ending on an ``ALIGNMENT`` boundary keeps every launch a whole number of
        vectors: torch's CPU fused op rounds its scalar tail differently from its
        vector body, and a GPU kernel keeps full-width loads. No view covers the
        padding; it starts at zero, which SGD and Adam steps keep at zero.
        The whole bucket's segment, the steady state's only one, is built once.
        """
        whole = start == 0 and stop == len(self.params)
        if whole and self.whole_segment is not None:
            return self.whole_segment
        begin = self.offsets[start]
        end = self.offsets[stop] if stop < len(self.params) else self.numel
        segment = Segment(
            params=_real_1d(self.flat_params[begin:end]),
            grads=_real_1d(self.flat_grads[begin:end]),
            state={key: _real_1d(flat[begin:end]) for key, flat in self.flat_state.items()},
        )
        if whole:
            self.whole_segment = segment
        return segment


def _scalar_dtype() -> torch.dtype:
    """torch's dtype for step counts: float64 under a float64 default dtype, else float32."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _check_grad(param: torch.Tensor, grad: torch.Tensor) -> None:
    if grad.is_sparse:
        raise RuntimeError(
            "tritonopt does not support sparse gradients; use torch.optim.SGD for "
            "parameters with sparse gradients (e.g. nn.Embedding(sparse=True))"
        )
    if grad.shape != param.shape or grad.dtype != param.dtype or grad.device != param.device:
        raise RuntimeError(
            f"gradient of shape {tuple(grad.shape)}, {grad.dtype} on {grad.device} does not "
            f"match its parameter of shape {tuple(param.shape)}, {param.dtype} on {param.device}"
        )
