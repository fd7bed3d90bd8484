"""``torch.compile`` over a tritonopt step, and over a training step that calls it,
matches torch.optim's class of the same name run eagerly (``integration.OPTIMIZERS``).

The backend is inductor, torch.compile's default and what users get: on 2 CPU cores
the six tests compile in about 45 s from a cold inductor cache (C++ code generation),
in a few seconds once its on-disk cache is warm.
"""

import pytest
import torch

from integration import OPTIMIZER_IDS, OPTIMIZERS, batch, loss_of, make_model
from tritonopt.testing import assert_optimizers_match

STEPS = 3


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from nothing and leaves no compiled frames behind."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _pair(case):
    ref_model, model = make_model(), make_model()
    ref_opt = case.torch_class(ref_model.parameters(), **case.kwargs)
    optimizer = case.tritonopt_class(model.parameters(), **case.kwargs)
    return ref_model, ref_opt, model, optimizer


@pytest.mark.parametrize("case", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_compiled_step_matches_eager_torch(case):
    ref_model, ref_opt, model, optimizer = _pair(case)
    compiled_step = torch.compile(optimizer.step)
    for step in range(STEPS):
        for m, opt in ((ref_model, ref_opt), (model, optimizer)):
            opt.zero_grad()
            loss_of(m, *batch(step)).backward()
        ref_opt.step()
        compiled_step()
        assert_optimizers_match(ref_opt, optimizer, f"step {step}")


@pytest.mark.parametrize("case", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_compiled_training_step_matches_eager_torch(case):
    ref_model, ref_opt, model, optimizer = _pair(case)

    @torch.compile
    def train_step(tokens, weights):
        optimizer.zero_grad()
        loss = loss_of(model, tokens, weights)
        loss.backward()
        optimizer.step()
        return loss

    for step in range(STEPS):
        ref_opt.zero_grad()
        ref_loss = loss_of(ref_model, *batch(step))
        ref_loss.backward()
        ref_opt.step()
        loss = train_step(*batch(step))
        torch.testing.assert_close(loss.detach(), ref_loss.detach(), msg=lambda m, s=step: f"loss at step {s}\n{m}")
        assert_optimizers_match(ref_opt, optimizer, f"step {step}")
