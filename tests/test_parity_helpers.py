"""The test helpers must be able to fail: a parity check that cannot fail proves nothing."""

import pytest
import torch
from hypothesis import find

from tritonopt.testing import assert_optimizers_match, make_tensor, param_specs
from tritonopt.testing import sgd_hyperparameters as hyperparameters


def _two_sgds(**candidate_overrides):
    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(4, 3, generator=generator), torch.randn(5, generator=generator)]
    reference_params = [torch.nn.Parameter(v.clone()) for v in values]
    candidate_params = [torch.nn.Parameter(v.clone()) for v in values]
    kwargs = dict(lr=0.1, momentum=0.9)
    reference = torch.optim.SGD(reference_params, **kwargs)
    candidate = torch.optim.SGD(candidate_params, **{**kwargs, **candidate_overrides})
    for _ in range(2):
        for r, c in zip(reference_params, candidate_params):
            grad = torch.randn(r.shape, generator=generator)
            r.grad, c.grad = grad.clone(), grad.clone()
        reference.step()
        candidate.step()
    return reference, candidate


def test_identical_runs_pass():
    assert_optimizers_match(*_two_sgds(), "identical")


def test_a_slightly_larger_lr_is_caught():
    reference, candidate = _two_sgds()
    candidate.param_groups[0]["lr"] = 0.1 * (1 + 1e-9)
    with pytest.raises(AssertionError, match="group 0 hyperparameters differ"):
        assert_optimizers_match(reference, candidate, "lr")
    reference, candidate = _two_sgds(lr=0.1 * 1.001)
    candidate.param_groups[0]["lr"] = 0.1  # hide the cause: the parameters must still tell
    with pytest.raises(AssertionError, match="step 2, group 0, parameter 0 .*parameter diverged"):
        assert_optimizers_match(reference, candidate, "step 2")


def test_a_skipped_momentum_update_is_caught():
    reference, candidate = _two_sgds()
    buffer = candidate.state[candidate.param_groups[0]["params"][1]]["momentum_buffer"]
    buffer.div_(0.9)  # as if the last step had not multiplied by the momentum
    with pytest.raises(AssertionError, match="parameter 1 .*state 'momentum_buffer' diverged"):
        assert_optimizers_match(reference, candidate, "momentum")


def test_missing_state_is_caught():
    reference, candidate = _two_sgds()
    del candidate.state[candidate.param_groups[0]["params"][0]]
    with pytest.raises(AssertionError, match="state keys"):
        assert_optimizers_match(reference, candidate, "state")


@pytest.mark.parametrize(
    "condition",
    [
        lambda s: s.shape == (),
        lambda s: 0 in s.shape,
        lambda s: len(s.shape) == 4 and s.layout == "channels_last",
        lambda s: s.layout == "transposed",
        lambda s: s.layout == "strided",
        lambda s: s.dtype == torch.float64,
    ],
    ids=["0-dim", "empty", "channels_last", "transposed", "strided", "float64"],
)
def test_param_strategy_reaches_every_kind(condition):
    spec = find(param_specs(), condition)
    tensor = make_tensor(spec, torch.Generator().manual_seed(0))
    assert tensor.shape == spec.shape and tensor.dtype == spec.dtype
    if spec.layout in ("transposed", "strided") and tensor.numel() > 1 and max(spec.shape) > 1:
        assert not tensor.is_contiguous()


def test_hyperparameter_strategy_reaches_every_switch():
    find(hyperparameters(), lambda h: h.get("nesterov") and h["weight_decay"] > 0 and h["maximize"])
    find(hyperparameters(), lambda h: h["momentum"] > 0 and h["dampening"] > 0)
    find(hyperparameters(), lambda h: isinstance(h["lr"], torch.Tensor))
