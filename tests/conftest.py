"""Test session setup: Triton's interpreter, Hypothesis profiles, the CPU path fixture.

The interpreter is chosen when ``@triton.jit`` decorates, so it is switched on
here, before anything imports ``tritonopt``. ``TRITONOPT_COMPILED=1`` keeps the
kernels compiled instead (for a GPU machine: CUDA tensors then run real kernels).
Where the interpreter rounds ``tl.fma`` twice (triton 3.6), its fma is replaced by
a correctly rounded one, as compiled kernels compute it (``exact_fma.py``).
"""

import os

if os.environ.get("TRITONOPT_COMPILED") != "1":
    os.environ["TRITON_INTERPRET"] = "1"

import pytest
import torch
from hypothesis import HealthCheck, settings

import exact_fma
import tritonopt

# An interpreter that rounds tl.fma twice (triton 3.6) would put its own last-bit error
# into every kernel test; compiled kernels round once. test_interpreter_fma.py shows it.
INTERPRETER_FMA_ROUNDS_TWICE = exact_fma.interpreter_fma_rounds_twice()
if INTERPRETER_FMA_ROUNDS_TWICE:
    exact_fma.install()

# cpu_path only chooses the CPU implementation for the whole test, so sharing it across examples is safe.
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]
settings.register_profile(
    "ci",
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.register_profile(
    "thorough",
    max_examples=400,
    stateful_step_count=60,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_OK,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICE = torch.device(os.environ.get("TRITONOPT_TEST_DEVICE", "cpu"))


@pytest.fixture(params=["triton", "torch"])
def cpu_path(request):
    """Run a test with CPU tensors updated by the Triton kernels, then by the torch path."""
    if request.param == "triton" and not tritonopt.kernels_interpreted() and DEVICE.type == "cpu":
        pytest.skip("kernels are compiled in this session; CPU tensors cannot run them")
    with tritonopt.cpu_implementation(request.param):
        yield request.param


@pytest.fixture
def record_updates(monkeypatch):
    """``record_updates(optimizer_class, summary)`` wraps both update paths of the class and
    returns a list that gets ``summary(params, kwargs)`` for every launch."""

    def watch(optimizer_class, summary):
        calls = []
        for path in ("kernel_update", "torch_update"):
            original = getattr(optimizer_class, path)

            def record(*args, _original=original, **kwargs):
                calls.append(summary(args[0], kwargs))
                return _original(*args, **kwargs)

            monkeypatch.setattr(optimizer_class, path, staticmethod(record))
        return calls

    return watch
