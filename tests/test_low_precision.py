"""bf16/fp16: never less accurate than torch's optimizer in that dtype, for every optimizer in the table.

Torch runs a low-precision trajectory. At every step of it, tritonopt and a
float64 torch oracle start from torch's current state (same parameters, same
state under the table's keys, same gradients) and take the same step;
tritonopt's distance to the oracle (summed absolute error over every parameter
and every 16-bit state tensor) must not exceed torch's own. Starting each step
from one shared state keeps the comparison exact rather than statistical: two
trajectories that each round differently drift apart at random, which would say
nothing about a step.
"""

import pytest
import torch
from hypothesis import currently_in_test_context, given, note
from hypothesis import strategies as st

from optimizers import SGD, params
from tritonopt.distance import distance

SHAPES = [(64, 33), (257,), (8, 3, 5, 5), (1000,)]


def _state_of(optimizer, parameters, keys):
    """Each parameter's tensors under ``keys`` (what it has of them)."""
    return [
        {k: v for k, v in optimizer.state.get(p, {}).items() if k in keys and v is not None} for p in parameters
    ]


def _distance(parameters, states, oracle_parameters, oracle_states):
    """Summed absolute error of the parameters and their 16-bit state against the oracle's."""
    values, exact = list(parameters), list(oracle_parameters)
    for p, state, oracle_state in zip(parameters, states, oracle_states, strict=True):
        assert state.keys() == oracle_state.keys(), "tritonopt keeps other state than torch"
        for key, value in state.items():
            if value.dtype == p.dtype:  # not Adam's float32 step count
                values.append(value)
                exact.append(oracle_state[key])
    return distance(values, exact).total_abs


def _check_steps(info, dtype, kwargs, seed, steps):
    generator = torch.Generator().manual_seed(seed)
    initial = [torch.randn(shape, generator=generator).to(dtype) for shape in SHAPES]
    reference = [torch.nn.Parameter(t.clone()) for t in initial]
    candidate = [torch.nn.Parameter(t.clone()) for t in initial]
    ref_opt = info.torch_cls(reference, **kwargs)
    cand_opt = info.cls(candidate, **kwargs)
    oracle_kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    for step in range(steps):
        # Shared starting point: torch's current state, in tritonopt and in float64.
        shared = _state_of(ref_opt, reference, info.state_keys)
        oracle = [torch.nn.Parameter(p.detach().double()) for p in reference]
        oracle_opt = info.torch_cls(oracle, **oracle_kwargs)
        for c, r, o, state in zip(candidate, reference, oracle, shared):
            c.detach().copy_(r.detach())
            for key, value in state.items():
                cand_opt.state[c][key].copy_(value)
                oracle_opt.state[o][key] = value.double() if value.dtype == dtype else value.clone()
            grad = torch.randn(c.shape, generator=generator).to(dtype)
            c.grad, r.grad, o.grad = grad.clone(), grad.clone(), grad.double()
        for optimizer in (cand_opt, ref_opt, oracle_opt):
            optimizer.step()
        oracle_state = _state_of(oracle_opt, oracle, info.state_keys)
        ours = _distance(candidate, _state_of(cand_opt, candidate, info.state_keys), oracle, oracle_state)
        theirs = _distance(reference, _state_of(ref_opt, reference, info.state_keys), oracle, oracle_state)
        if currently_in_test_context():
            note(f"step {step}: tritonopt error {ours:.6g}, torch error {theirs:.6g}")
        assert ours <= theirs, f"{info.name} step {step}: tritonopt {dtype} error {ours!r} exceeds torch's {theirs!r}"


@pytest.mark.parametrize("info", params())
@given(
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 6),
)
def test_never_less_accurate_than_torch(cpu_path, info, dtype, data, seed, steps):
    _check_steps(info, dtype, data.draw(info.hyperparameters.defaults, label="kwargs"), seed, steps)


@pytest.mark.xfail(strict=True, raises=AssertionError, reason="fp32 then fp16 is a double rounding: two near-midpoint elements round away")
def test_a_near_tie_rounded_twice(cpu_path):
    """Found by the ``thorough`` profile: fp16 SGD, lr 1e-4, one step. Only two elements
    differ from torch's, and for both the exact result lies 3.8e-9 below a midpoint of
    fp16: tritonopt's fp32 result rounds onto the midpoint, then to even, away from the
    exact value; torch's op-by-op rounding lands below it. Each is off by half an ulp
    either way; tritonopt's sum is larger by 1.5e-8 of 0.316."""
    kwargs = dict(lr=torch.tensor([1e-4]), momentum=0.33266440638483585, nesterov=True)
    _check_steps(SGD, torch.float16, kwargs, seed=2641278, steps=1)
