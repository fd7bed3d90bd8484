"""tritonopt's optimizers and torch's driven through the same random histories.

The machine is ``tritonopt.testing.parity_machine`` (what users point at their
own optimizers): random models and groups, backward, grad assignment, steps
with and without closures, hyperparameter changes, zero_grad, add_param_group,
state_dict round trips and replaced storage, compared with torch after every
step. tritonopt adds one invariant: after a step, each group's state of one
dtype lives in one flat buffer per key, while parameters and gradients stay in
storage of their own. The cases come from the optimizer table (``optimizers.py``).
The same machine also runs with ``capturable=True`` on the candidate and one more
rule, which switches it per group.
"""

import pytest
import torch
from hypothesis import strategies as st
from hypothesis.stateful import rule, run_state_machine_as_test

import tritonopt
from conftest import DEVICE
from optimizers import OPTIMIZERS
from tritonopt.testing import parity_machine

CASES = [
    pytest.param(info.cls, info.torch_cls, info.hyperparameters, id=info.name.lower()) for info in OPTIMIZERS
]


def _flat_state_keys(optimizer):
    """The state keys tritonopt keeps in flat buffers: per-element state, and step counts."""
    return optimizer.state_buffer_keys + (("step",) if optimizer.counts_steps else ())


def assert_flat(optimizer, context):
    """After a step, each group's state of one dtype lives in one buffer per key (what
    the launch addresses), and no two parameters or gradients share a storage: tritonopt
    never packed them into one."""
    every = [p for group in optimizer.param_groups for p in group["params"]]
    for what, values in (("parameters", every), ("gradients", [p.grad for p in every if p.grad is not None])):
        storages = [t.untyped_storage().data_ptr() for t in values if t.numel()]
        assert len(set(storages)) == len(storages), f"{context}: {what} share storage"
    for g, group in enumerate(optimizer.param_groups):
        by_dtype = {}
        for p in group["params"]:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, params in by_dtype.items():
            tensors = {}
            for key in _flat_state_keys(optimizer):
                tensors[key] = [optimizer.state[p][key] for p in params if key in optimizer.state.get(p, {})]
            for what, values in tensors.items():
                # An empty tensor holds no elements, so where it points is immaterial.
                storages = {t.untyped_storage().data_ptr() for t in values if t.numel()}
                assert len(storages) <= 1, f"{context}: group {g} {dtype} {what} live in {len(storages)} buffers"


@pytest.mark.parametrize("info", OPTIMIZERS, ids=lambda info: info.name.lower())
def test_table_describes_the_class(info):
    """The table's state keys and update functions are the class's own."""
    assert info.state_keys == _flat_state_keys(info.cls)
    assert info.cls.kernel_update is info.kernel_update and info.cls.torch_update is info.torch_update
    assert info.cls.__name__ == info.torch_cls.__name__ == info.name


@pytest.mark.parametrize(("candidate", "reference", "hyperparameters"), CASES)
def test_matches_torch_every_step(candidate, reference, hyperparameters, cpu_path):
    machine = parity_machine(
        candidate, reference, hyperparameters=hyperparameters, invariant=assert_flat, device=DEVICE
    )
    run_state_machine_as_test(machine)


def test_tensor_lr_step_size_is_torchs(cpu_path):
    """Found by the state machine: with a float32 tensor lr on float64 parameters,
    torch's AdamW forms its step size and decay factor in float32, and so must
    tritonopt (forming them in float64 from ``float(lr)`` drifts past assert_close)."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(1000, dtype=torch.float64, generator=generator)
    grads = [torch.randn(1000, dtype=torch.float64, generator=generator) for _ in range(8)]
    results = []
    for optimizer_class in (tritonopt.AdamW, torch.optim.AdamW):
        param = torch.nn.Parameter(start.clone())
        optimizer = optimizer_class([param], lr=torch.tensor([0.3]), weight_decay=0.01)
        for grad in grads:
            param.grad = grad.clone()
            optimizer.step()
        results.append(param.detach())
    torch.testing.assert_close(*results)



def _capturable(candidate, reference):
    """The candidate built with ``capturable=True`` and keeping its own flag through
    ``load_state_dict`` (torch's takes the checkpoint's); the reference, torch's default
    implementation, dropping it (torch's capturable step refuses CPU tensors)."""

    class Candidate(candidate):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs, capturable=True)

        def load_state_dict(self, state_dict):
            own = [bool(group.get("capturable")) for group in self.param_groups]
            super().load_state_dict(state_dict)
            for group, capturable in zip(self.param_groups, own):
                group["capturable"] = capturable

    class Reference(reference):
        def load_state_dict(self, state_dict):
            super().load_state_dict(state_dict)
            for group in self.param_groups:
                group["capturable"] = False  # torch's SGD ignores the key

    Candidate.__name__, Reference.__name__ = candidate.__name__, reference.__name__
    return Candidate, Reference


@pytest.mark.parametrize(("candidate", "reference", "hyperparameters"), CASES)
def test_capturable_matches_torch_every_step(candidate, reference, hyperparameters):
    """The machine with ``capturable=True`` on the candidate and one more rule, switching it
    per group (state moves between host and device step counts), on the path a CUDA graph
    captures: the Triton kernels (interpreted on the CPU)."""
    if DEVICE.type == "cpu" and not tritonopt.kernels_interpreted():
        pytest.skip("kernels are compiled in this session; CPU tensors cannot run them")
    parity = parity_machine(
        *_capturable(candidate, reference), hyperparameters=hyperparameters, invariant=assert_flat, device=DEVICE
    )

    class CapturableParity(parity):
        @rule(group=st.integers(0, 5), on=st.booleans())
        def switch_capturable(self, group, on):
            self.candidate.param_groups[group % len(self.candidate.param_groups)]["capturable"] = on

    with tritonopt.cpu_implementation("triton"):
        run_state_machine_as_test(CapturableParity)
