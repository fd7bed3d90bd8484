"""The plain-torch updates for CPU tensors when the Triton kernels are not interpreted.

Each has its kernel launcher's contract (``tritonopt.kernels.sgd.sgd_update``,
``tritonopt.kernels.adam.adam_update``) and applies torch's own fused op (what
``torch.optim.SGD(fused=True)`` and ``torch.optim.Adam(fused=True)`` call) once
per hyperparameter row, over that row's tensors in place. bf16/fp16 SGD is
computed on fp32 copies and rounded once, the kernels' numerics, because torch
2.13's CPU fused SGD gives wrong results for 16-bit tensors (errors of 0.3 on
values of order 1, checked in ``tests/test_kernels.py``); its fused Adam already
computes them in fp32 and rounds once. Stochastic and Kahan rounding, and state
in another dtype than the parameters, run the update on fp32 copies too and
store the parameters as the kernels do (``_rounding``).
"""

from collections.abc import Sequence
from itertools import compress, groupby

import torch
from torch.optim.adam import _single_tensor_adam

from ._rounding import store_params
from .kernels._rounding import KAHAN, NEAREST, rounding_mode
from .kernels.adam import AdamHyperparameters
from .kernels.sgd import SGDHyperparameters



def _by_row(rows: Sequence[int], *columns: Sequence[torch.Tensor] | None):
    """``(row, that run's slice of each column)`` per run of tensors sharing a row (the
    engine appends a group's tensors together); an absent (None) column stays None."""
    start = 0
    for row, run in groupby(rows):
        stop = start + len(list(run))
        yield row, [None if column is None else list(column[start:stop]) for column in columns]
        start = stop


def _counted(rows: Sequence[int], hyperparameters: Sequence, steps: Sequence[torch.Tensor], with_count):
    """A capturable launch's rows as this path takes them: one per (row, step count),
    ``with_count(row, count)`` making each. This path updates CPU tensors only, so the
    counts are read where they live, in host memory."""
    counts = torch.stack(list(steps)).tolist()
    made: dict[tuple[int, float], int] = {}
    counted_rows, counted_hyperparameters = [], []
    for row, count in zip(rows, counts):
        if (row, count) not in made:
            made[row, count] = len(counted_hyperparameters)
            counted_hyperparameters.append(with_count(hyperparameters[row], count))
        counted_rows.append(made[row, count])
    return counted_rows, counted_hyperparameters


def _in_fp32(
    update, buffers: list[list[torch.Tensor] | None], write_back: tuple[bool, ...],
    mode: int = NEAREST, compensations=None, streams=None, seed: int = 0, position: int = 0,
) -> None:
    """Run ``update`` on copies in the compute dtype (fp64 for float64 parameters, else
    fp32) of the ``buffers`` stored otherwise, and round the ``write_back`` ones once;
    the parameters (the first buffer) in ``mode``'s way (with Kahan, the copies start
    as parameter plus compensation)."""
    compute = torch.float64 if buffers[0][0].dtype == torch.float64 else torch.float32
    if mode == NEAREST and all(b is None or b[0].dtype == compute for b in buffers):
        update(*buffers)
        return
    computed = [None if b is None else [t.to(compute) for t in b] for b in buffers]
    if mode == KAHAN:
        # In place: a 16-bit compensation is promoted exactly, the sum rounded once.
        torch._foreach_add_(computed[0], list(compensations))
    update(*computed)
    store_params(
        buffers[0], computed[0], mode=mode, compensations=compensations, streams=streams, seed=seed, position=position
    )
    for buffer, values, written in list(zip(buffers, computed, write_back))[1:]:
        if written and buffer is not None and buffer[0].dtype != compute:
            torch._foreach_copy_(buffer, values)


def _fused_sgd(params, grads, buffers, h: SGDHyperparameters, nesterov, maximize, grad_scale, found_inf) -> None:
    has_momentum = h.momentum != 0
    torch._fused_sgd_(
        params,
        grads,
        buffers if has_momentum else [],
        weight_decay=h.weight_decay,
        momentum=h.momentum,
        lr=h.lr,
        dampening=h.dampening,
        nesterov=nesterov,
        maximize=maximize,
        is_first_step=has_momentum and h.first_step,
        grad_scale=grad_scale,
        found_inf=found_inf,
    )


def _foreach_sgd(params, grads, buffers, h: SGDHyperparameters, nesterov, maximize, grad_scale, found_inf) -> None:
    """torch's for-loop SGD as foreach ops (gradients left as they are, unlike torch's
    foreach path with nesterov), with the fused op's GradScaler contract."""
    if found_inf is not None and found_inf.item():
        return
    if grad_scale is not None:
        torch._foreach_div_(grads, grad_scale.to(grads[0].dtype).reshape(()))
    update = torch._foreach_neg(grads) if maximize else grads
    if h.weight_decay != 0:
        update = torch._foreach_add(update, params, alpha=h.weight_decay)
    if h.momentum != 0:
        if h.first_step:
            torch._foreach_copy_(buffers, update)
        else:
            torch._foreach_mul_(buffers, h.momentum)
            torch._foreach_add_(buffers, update, alpha=1 - h.dampening)
        update = torch._foreach_add(update, buffers, alpha=h.momentum) if nesterov else buffers
    torch._foreach_add_(params, update, alpha=-h.lr)


def sgd_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    momentum_buffers: Sequence[torch.Tensor] | None,
    compensations: Sequence[torch.Tensor] | None = None,
    *,
    rows: Sequence[int],
    hyperparameters: Sequence[SGDHyperparameters],
    nesterov: bool,
    maximize: bool,
    rounding: str = "nearest",
    state_dtype: torch.dtype | None = None,
    streams: Sequence[int] | None = None,
    capturable: bool = False,
    steps: Sequence[torch.Tensor] | None = None,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    table: object = None,
) -> None:
    """Same contract as ``tritonopt.kernels.sgd.sgd_update`` (``table`` is unused).

    Tensors of whole 16-element vectors go through torch's fused op; the others
    through foreach ops, because the fused op rounds its scalar tail differently
    from torch's for-loop (an fma), and momentum carries that difference on.
    """
    if capturable:
        def with_count(h: SGDHyperparameters, count: float | None) -> SGDHyperparameters:
            first_step = h.first_step if count is None else count == 1
            return h._replace(lr=float(h.lr), weight_decay=float(h.weight_decay), first_step=first_step)

        if steps is None:
            hyperparameters = [with_count(h, None) for h in hyperparameters]
        else:
            rows, hyperparameters = _counted(rows, hyperparameters, steps, with_count)
    mode = rounding_mode(rounding, params[0].dtype, capturable)
    whole_vectors = [numel % 16 == 0 for numel in map(torch.Tensor.numel, params)]
    for by_length, update in ((whole_vectors, _fused_sgd), ([not w for w in whole_vectors], _foreach_sgd)):
        if not any(by_length):
            continue
        columns, chosen_rows = (params, grads, momentum_buffers, compensations, streams), rows
        if not all(by_length):
            columns = [None if column is None else list(compress(column, by_length)) for column in columns]
            chosen_rows = list(compress(rows, by_length))
        for row, buffers in _by_row(chosen_rows, *columns):
            h = hyperparameters[row]
            if h.momentum == 0:
                buffers[2] = None
            *buffers, row_compensations, row_streams = buffers

            def row_update(params, grads, momentum_buffers, h=h, update=update):
                update(params, grads, momentum_buffers, h, nesterov, maximize, grad_scale, found_inf)

            _in_fp32(
                row_update, buffers, (True, grad_scale is not None, True),
                mode, row_compensations, row_streams, h.seed, h.rounding_step,
            )


def adam_update(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    exp_avgs: Sequence[torch.Tensor],
    exp_avg_sqs: Sequence[torch.Tensor],
    max_exp_avg_sqs: Sequence[torch.Tensor] | None,
    compensations: Sequence[torch.Tensor] | None = None,
    *,
    rows: Sequence[int],
    hyperparameters: Sequence[AdamHyperparameters],
    decoupled_weight_decay: bool,
    amsgrad: bool,
    maximize: bool,
    rounding: str = "nearest",
    state_dtype: torch.dtype | None = None,
    streams: Sequence[int] | None = None,
    capturable: bool = False,
    steps: Sequence[torch.Tensor] | None = None,
    grad_scale: torch.Tensor | None = None,
    found_inf: torch.Tensor | None = None,
    table: object = None,
) -> None:
    """Same contract as ``tritonopt.kernels.adam.adam_update`` (``table`` is unused)."""
    mode = rounding_mode(rounding, params[0].dtype, capturable)
    own_numerics = mode != NEAREST or (state_dtype or params[0].dtype) != params[0].dtype
    if capturable:
        rows, hyperparameters = _counted(rows, hyperparameters, steps, lambda h, count: h._replace(step=count))
    columns = (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None, compensations, streams)
    for row, buffers in _by_row(rows, *columns):
        h = hyperparameters[row]
        *buffers, row_compensations, row_streams = buffers
        if own_numerics:
            # The fused op on fp32 copies, then the parameters stored in the mode's way.
            def update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h=h):
                _fused_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h, decoupled_weight_decay,
                            amsgrad, maximize, grad_scale, found_inf)

            _in_fp32(
                update, buffers, (True, grad_scale is not None, True, True, True),
                mode, row_compensations, row_streams, h.seed, h.rounding_step,
            )
            continue
        if any(isinstance(value, torch.Tensor) for value in (h.lr, h.beta1, h.beta2)):
            # torch's fused op computes its scalars in double, its for-loop (the reference)
            # in the tensor hyperparameter's dtype: run the for-loop's own function.
            def update(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h=h):
                if found_inf is not None and found_inf.item():
                    return
                if grad_scale is not None:
                    torch._foreach_div_(grads, grad_scale.to(grads[0].dtype).reshape(()))
                _single_tensor_adam(
                    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs or [],
                    [torch.tensor(float(h.step - 1)) for _ in params], None, None, amsgrad=amsgrad,
                    has_complex=False, beta1=h.beta1, beta2=h.beta2, lr=h.lr, weight_decay=h.weight_decay,
                    eps=h.eps, maximize=maximize, capturable=False, differentiable=False,
                    decoupled_weight_decay=decoupled_weight_decay,
                )

            _in_fp32(update, buffers, write_back=(True, grad_scale is not None, True, True, True))
            continue
        # torch's CPU fused Adam computes 16-bit buffers in fp32 and rounds once already.
        _fused_adam(*buffers, h, decoupled_weight_decay, amsgrad, maximize, grad_scale, found_inf)


def _fused_adam(
    params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, h: AdamHyperparameters,
    decoupled_weight_decay, amsgrad, maximize, grad_scale, found_inf,
) -> None:
    fused_adam = torch._fused_adamw_ if decoupled_weight_decay else torch._fused_adam_
    step = torch.tensor(float(h.step), dtype=torch.float32, device=params[0].device)
    fused_adam(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs or [],
        [step] * len(params),
        amsgrad=amsgrad,
        lr=h.lr,
        beta1=h.beta1,
        beta2=h.beta2,
        weight_decay=h.weight_decay,
        eps=h.eps,
        maximize=maximize,
        grad_scale=grad_scale,
        found_inf=found_inf,
    )
