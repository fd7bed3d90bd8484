"""torch's own optimizer database, run against tritonopt.

``torch.testing._internal.common_optimizers.optim_db`` is what torch's optimizer
tests iterate over. For SGD, Adam and AdamW this module takes from it:

* every configuration: ``optim_inputs_func`` for each device type the database
  tells apart (CUDA adds the ``capturable`` ones, MPS a tensor lr for Adam), each
  with the implementation flags torch's own helper adds (``foreach``, ``fused``,
  ``differentiable``). tritonopt gets the configuration as it is; the reference
  is torch's class with the same hyperparameters on its default implementation
  (``foreach``, ``fused`` and ``capturable`` choose how torch computes one update,
  and torch runs ``capturable`` only on CUDA). ``differentiable`` changes what a
  step must do, so both sides get it, on non-leaf parameters (torch's
  differentiable step cannot update a leaf in place), and the gradient through
  the steps is compared too (or raises where torch's does). Both are stepped ``STEPS`` times with the same
  gradients and compared after every step (``assert_close`` defaults), in
  float32 and float64, on both CPU paths.
* every error case (``optim_error_inputs_func``): torch's class raises (or warns)
  as the database says, and tritonopt raises the same type with a message that
  matches torch's regex, at construction or at step as the case says.

As torch adds cases, these tests grow with it. ``capturable=True`` configurations
(CUDA's) run on the CPU too: tritonopt's capturable step runs there, where torch's
refuses, and is compared with torch's default implementation like every other.
"""

import copy
import re
import warnings

import pytest
import torch
from torch.testing._internal.common_optimizers import (
    OptimizerErrorEnum,
    _get_optim_inputs_including_global_cliquey_kwargs,
    optim_db,
)

import tritonopt
from conftest import DEVICE
from tritonopt.testing import assert_optimizers_match

OURS = {torch.optim.SGD: tritonopt.SGD, torch.optim.Adam: tritonopt.Adam, torch.optim.AdamW: tritonopt.AdamW}
INFOS = [info for info in optim_db if info.optim_cls in OURS]
# The device types whose configurations the database's functions tell apart ("xpu" gives CUDA's).
DEVICE_TYPES = ("cpu", "cuda", "mps")
# Flags that choose torch's implementation of one update: the candidate's alone.
IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable")
SHAPES = ((10, 5), (10,), (1025,), ())  # torch's weight and bias, a block and one, a 0-dim
STEPS = 3  # under the interpreter a step costs about the same whatever the sizes
DTYPES = (torch.float32, torch.float64)


def _configurations(info):
    """Every configuration of ``info`` over the device types, each once (by its description)."""
    seen = {}
    for device_type in DEVICE_TYPES:
        for config in _get_optim_inputs_including_global_cliquey_kwargs(device_type, None, info):
            seen.setdefault(config.desc, config)
    return list(seen.values())


CONFIGURATIONS = [
    pytest.param(info, config, id=f"{info.name}-{config.desc}") for info in INFOS for config in _configurations(info)
]


def _error_cases(info):
    cases = []
    for device in dict.fromkeys(["cpu", str(DEVICE)]):  # CUDA's own cases where the tests run there
        cases.extend((device, case) for case in info.optim_error_inputs_func(device=device, dtype=torch.float32))
    return cases


ERROR_CASES = [
    pytest.param(info, case, id=f"{info.name}-{device}-{case.optimizer_error_input.desc}")
    for info in INFOS
    for device, case in _error_cases(info)
]


def test_database_has_our_optimizers():
    assert sorted(info.name for info in INFOS) == ["Adam", "AdamW", "SGD"]
    counts = {info.name: (len(_configurations(info)), len(_error_cases(info))) for info in INFOS}
    print("optim_db configurations and error cases per optimizer:", counts)
    assert all(configurations and errors for configurations, errors in counts.values())


def _params(dtype, differentiable):
    """Fresh parameters of ``SHAPES`` (non-leaf clones under ``differentiable``) and their leaves."""
    generator = torch.Generator().manual_seed(0)
    leaves = [torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype) for shape in SHAPES]
    leaves = [torch.nn.Parameter(leaf.to(DEVICE)) for leaf in leaves]
    if not differentiable:
        return leaves, leaves
    return leaves, [leaf.clone() for leaf in leaves]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda dtype: str(dtype).removeprefix("torch."))
@pytest.mark.parametrize(("info", "config"), CONFIGURATIONS)
def test_configuration_matches_torch(info, config, dtype, cpu_path):
    kwargs = config.kwargs
    differentiable = bool(kwargs.get("differentiable"))
    reference_kwargs = {k: v for k, v in kwargs.items() if k not in IMPLEMENTATION_FLAGS}
    reference_leaves, reference_params = _params(dtype, differentiable)
    candidate_leaves, candidate_params = _params(dtype, differentiable)
    reference = info.optim_cls(reference_params, **copy.deepcopy(reference_kwargs))
    candidate = OURS[info.optim_cls](candidate_params, **copy.deepcopy(kwargs))
    generator = torch.Generator().manual_seed(1)
    for step in range(1, STEPS + 1):
        for reference_p, candidate_p in zip(reference_params, candidate_params):
            grad = torch.randn(reference_p.shape, generator=generator, dtype=torch.float64).to(dtype).to(DEVICE)
            reference_p.grad, candidate_p.grad = grad.clone(), grad.clone()
        reference.step()
        candidate.step()
        assert_optimizers_match(reference, candidate, f"{info.name} {config.desc!r}, step {step}")
    if differentiable:
        _assert_same_gradient_through_steps(reference_params, reference_leaves, candidate_params, candidate_leaves)


def _assert_same_gradient_through_steps(reference_params, reference_leaves, candidate_params, candidate_leaves):
    """The gradient of a loss on the stepped parameters with respect to the starting ones is torch's;
    where torch cannot form it (its amsgrad state is modified in place from step to step), the
    candidate raises the same type."""
    generator = torch.Generator().manual_seed(2)
    weights = [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for p in reference_params]

    def gradient(params, leaves):
        return torch.autograd.grad(sum((p * w).sum() for p, w in zip(params, weights)), leaves)

    try:
        expected = gradient(reference_params, reference_leaves)
    except RuntimeError as error:
        with pytest.raises(type(error)):
            gradient(candidate_params, candidate_leaves)
        return
    torch.testing.assert_close(gradient(candidate_params, candidate_leaves), expected)


def _raises_as_the_case_says(case, act):
    """``act()`` raises ``case.error_type`` (or warns it) with a message matching ``case.error_regex``."""
    if issubclass(case.error_type, Warning):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            act()
        messages = [str(w.message) for w in caught if issubclass(w.category, case.error_type)]
        assert any(re.search(case.error_regex, m) for m in messages), (
            f"no {case.error_type.__name__} matching {case.error_regex!r}; warnings: {messages}"
        )
        return
    with pytest.raises(case.error_type, match=case.error_regex):
        act()


@pytest.mark.parametrize(("info", "case"), ERROR_CASES)
def test_error_case_raises_as_torch(info, case):
    """Where the database's case has no parameters (``params=None``), both get the same small one."""
    optimizer_input = case.optimizer_error_input
    for optimizer_class in (info.optim_cls, OURS[info.optim_cls]):
        params = copy.deepcopy(optimizer_input.params)  # deepcopy keeps a parameter listed twice twice
        if params is None:
            params = [torch.nn.Parameter(torch.ones(2, 3, device=DEVICE))]
        kwargs = copy.deepcopy(optimizer_input.kwargs)
        if case.error_on == OptimizerErrorEnum.CONSTRUCTION_ERROR:
            _raises_as_the_case_says(case, lambda: optimizer_class(params, **kwargs))
        else:
            optimizer = optimizer_class(params, **kwargs)
            _raises_as_the_case_says(case, optimizer.step)
