"""tritonopt.testing catches real bugs in any torch.optim-style optimizer, with a runnable reproduction.

Each planted algorithm bug is one overridden method of ``ReadableSGD``, torch.optim.SGD's
update written out per parameter in torch's op order (which itself must pass). Each
planted kernel bug (``PartialUpdate``) is torch's SGD that leaves the elements a wrong
launch grid or a wrong mask would miss as they were.
"""

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import find

from tritonopt.kernels._blocks import VECTOR
from tritonopt.kernels._launch import launch_config
from tritonopt.testing import (
    ADAM_HYPERPARAMETERS,
    ADAMW_HYPERPARAMETERS,
    SGD_HYPERPARAMETERS,
    ParamSpec,
    assert_parity,
    param_specs,
    parity_machine,
)
from tritonopt.testing.tensors import BLOCK_BOUNDARIES, BOUNDARY_SIZES, LARGE_SIZES, VECTOR_ELEMENTS, gradient_poison

# The derandomized ci profile reaches every bug below within 5 histories; the
# margin covers draws shifting as other test modules are imported. A caught
# bug stops the search, so the margin costs nothing while the bugs are caught.
BUG_EXAMPLES = 50
BUG_STEPS = 10


class ReadableSGD(torch.optim.SGD):
    """torch.optim.SGD's ``_single_tensor_sgd``, one method per decision."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                self._update(group, p)
        return loss

    def _update(self, group, p):
        if p.grad is None:
            return
        grad = self._signed(group, p.grad)
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        if group["momentum"] != 0:
            grad = self._momentum(group, p, grad)
        p.add_(grad, alpha=-self._lr(group))

    def _signed(self, group, grad):
        return -grad if group["maximize"] else grad

    def _momentum(self, group, p, grad):
        state = self.state[p]
        buffer = state.get("momentum_buffer")
        if buffer is None:
            buffer = state["momentum_buffer"] = self._first_buffer(group, grad)
        else:
            buffer.mul_(group["momentum"]).add_(grad, alpha=1 - group["dampening"])
        return self._nesterov(group, grad, buffer) if group["nesterov"] else buffer

    def _first_buffer(self, group, grad):
        return grad.detach().clone()

    def _nesterov(self, group, grad, buffer):
        return grad.add(buffer, alpha=group["momentum"])

    def _lr(self, group):
        return float(group["lr"])  # torch reads a tensor lr as a number too


class DampensFirstStep(ReadableSGD):
    def _first_buffer(self, group, grad):
        return grad.detach().clone().mul_(1 - group["dampening"])


class DecaysWithoutGrad(ReadableSGD):
    def _update(self, group, p):
        if p.grad is None and group["weight_decay"] != 0:
            p.add_(p, alpha=-float(group["lr"]) * group["weight_decay"])
        super()._update(group, p)


class ReadsLrOnce(ReadableSGD):
    def __init__(self, params, lr=1e-3, **hyperparameters):
        super().__init__(params, lr=lr, **hyperparameters)
        self.lr_at_construction = float(lr)

    def _lr(self, group):
        return self.lr_at_construction


class NesterovBufferAlone(ReadableSGD):
    def _nesterov(self, group, grad, buffer):
        return buffer


class LosesMaximize(ReadableSGD):
    def _signed(self, group, grad):
        return grad


BLOCK = launch_config(torch.device("cpu"), 1).block_size


class PartialUpdate(torch.optim.SGD):
    """torch.optim.SGD, then every element outside ``updated(numel)`` put back as it was
    (in the parameter's element order), as a kernel that misses those elements leaves them."""

    @staticmethod
    def updated(numel: int) -> slice:
        return slice(0, numel)

    @torch.no_grad()
    def step(self, closure=None):
        before = [(p, p.detach().clone()) for group in self.param_groups for p in group["params"]]
        loss = super().step(closure)
        for p, old in before:
            updated = self.updated(p.numel())
            restored = old.reshape(-1).clone()
            restored[updated] = p.detach().reshape(-1)[updated]
            p.copy_(restored.view(p.shape))
        return loss


class FirstBlockOnly(PartialUpdate):
    """A launch grid of one program per tensor: only the first block is updated."""

    @staticmethod
    def updated(numel):
        return slice(0, BLOCK)


class TailOnly(PartialUpdate):
    """Only the masked tail path ran: the elements after the last whole vector."""

    @staticmethod
    def updated(numel):
        return slice(numel - numel % VECTOR, numel)


class BodyOnly(PartialUpdate):
    """Only the whole-vector path ran: the last partial vector is missed."""

    @staticmethod
    def updated(numel):
        return slice(0, numel - numel % VECTOR)


class LastPartialBlockMissed(PartialUpdate):
    """A grid of ``numel // BLOCK`` programs instead of ``cdiv(numel, BLOCK)``."""

    @staticmethod
    def updated(numel):
        return slice(0, numel - numel % BLOCK)


KERNEL_BUGS = [FirstBlockOnly, TailOnly, BodyOnly, LastPartialBlockMissed]


def test_strategies_know_the_kernels_boundaries():
    assert BLOCK in BLOCK_BOUNDARIES and VECTOR == VECTOR_ELEMENTS
    assert {BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 1} <= set(BOUNDARY_SIZES)
    assert min(LARGE_SIZES) >= 2**16 and all(size % BLOCK and size % VECTOR for size in LARGE_SIZES)
    find(param_specs(), lambda spec: spec.shape == (BLOCK + 1,) and spec.layout == "strided")
    find(param_specs(), lambda spec: spec.shape[0] in LARGE_SIZES if spec.shape else False)


def test_partial_update_without_a_bug_matches_torch():
    assert_parity(PartialUpdate, torch.optim.SGD, max_examples=10)


def _assert_caught_with_a_reproduction(bug, **settings):
    """``assert_parity`` fails on ``bug``, naming it, and its printed program replays the divergence."""
    with pytest.raises(AssertionError) as failure:
        assert_parity(bug, torch.optim.SGD, **settings)
    message = str(failure.value)
    print(message)
    assert f"test_testing.{bug.__name__} diverged from torch.optim.SGD" in message
    program = message.split("(runs as a script):\n\n", 1)[1]
    assert program.rstrip().endswith("state.teardown()")
    with pytest.raises(AssertionError):
        exec(program, {})


@pytest.mark.parametrize("bug", KERNEL_BUGS)
def test_planted_kernel_bug_is_caught_with_defaults(bug):
    """With the loaded profile's settings (ci: 25 histories of 25 steps), a shrunk reproduction."""
    _assert_caught_with_a_reproduction(bug)


def test_torch_sgd_matches_itself():
    assert_parity(torch.optim.SGD, torch.optim.SGD)


def test_readable_sgd_matches_torch():
    assert_parity(ReadableSGD, torch.optim.SGD)


@pytest.mark.parametrize(
    ("reference", "hyperparameters"),
    [(torch.optim.Adam, ADAM_HYPERPARAMETERS), (torch.optim.AdamW, ADAMW_HYPERPARAMETERS)],
    ids=["adam", "adamw"],
)
def test_machine_runs_adam_and_adamw(reference, hyperparameters):
    assert_parity(reference, reference, hyperparameters=hyperparameters, dtypes=(torch.float32, torch.bfloat16))


@pytest.mark.parametrize(
    "bug", [DampensFirstStep, DecaysWithoutGrad, ReadsLrOnce, NesterovBufferAlone, LosesMaximize]
)
def test_planted_bug_is_caught_with_a_reproduction(bug):
    _assert_caught_with_a_reproduction(bug, max_examples=BUG_EXAMPLES, steps=BUG_STEPS)


def test_import_tritonopt_does_not_import_hypothesis(tmp_path):
    code = "import sys, tritonopt; assert 'hypothesis' not in sys.modules and 'tritonopt.testing' not in sys.modules"
    # Outside the source tree: the installed package, whose tritonopt.kernels is kernels/.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_hyperparameter_spaces_reach_every_switch():
    find(ADAM_HYPERPARAMETERS.defaults, lambda h: h.get("amsgrad") and h.get("decoupled_weight_decay") and h.get("maximize"))
    find(ADAM_HYPERPARAMETERS.defaults, lambda h: isinstance(h["lr"], torch.Tensor) and h.get("weight_decay", 0) > 0)
    find(ADAMW_HYPERPARAMETERS.defaults, lambda h: h.get("betas", (0.9,))[0] == 0.0 and h.get("eps", 1e-8) > 1e-8)
    assert "decoupled_weight_decay" not in ADAMW_HYPERPARAMETERS.mutable  # AdamW takes no such argument
    find(ADAM_HYPERPARAMETERS.changes(), lambda change: change == ("amsgrad", True))
    find(SGD_HYPERPARAMETERS.changes(), lambda change: change[0] == "lr" and isinstance(change[1], torch.Tensor))


def test_nonfinite_gradients_compare_equal_when_both_agree():
    assert_parity(torch.optim.SGD, torch.optim.SGD, nonfinite=True, max_examples=10)
    find(gradient_poison(True), lambda value: value is not None and math.isnan(value))


def _adam_switching_amsgrad_on(candidate):
    """Adam stepped once, then amsgrad switched on: torch raises KeyError('max_exp_avg_sq')."""
    machine = parity_machine(candidate, torch.optim.Adam, hyperparameters=ADAM_HYPERPARAMETERS)()
    spec = ParamSpec(shape=(3,), dtype=torch.float32)
    machine.build(seed=0, params=[(spec, 0)], defaults={"lr": 0.1}, overrides=[{}, {}, {}])
    machine.backward(chosen={0})
    machine.step()
    machine.change_hyperparameter(group=0, change=("amsgrad", True))
    machine.step()
    return machine


def test_where_the_reference_raises_the_candidate_must_raise_the_same():
    machine = _adam_switching_amsgrad_on(torch.optim.Adam)  # both raise KeyError: passes, state still compared
    machine.change_hyperparameter(group=0, change=("amsgrad", False))
    machine.step()

    class SwallowsErrors(torch.optim.Adam):
        def step(self, closure=None):
            try:
                return super().step(closure)
            except KeyError:
                return None

    with pytest.raises(AssertionError, match="the reference raised KeyError.*the candidate did not"):
        _adam_switching_amsgrad_on(SwallowsErrors)
