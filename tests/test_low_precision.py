"""bf16/fp16: never less accurate than torch.optim.SGD in that dtype.

Torch runs a low-precision trajectory. At every step of it, tritonopt and a
float64 torch oracle start from torch's current state (same parameters, same
momentum buffers, same gradients) and take the same step; tritonopt's distance
to the oracle (summed absolute error over every parameter and momentum buffer)
must not exceed torch's own. Starting each step from one shared state keeps the
comparison exact rather than statistical: two trajectories that each round
differently drift apart at random, which would say nothing about a step.
"""

import torch
from hypothesis import given, note
from hypothesis import strategies as st

import tritonopt
from tritonopt.distance import distance
from tritonopt.testing import sgd_hyperparameters as hyperparameters

SHAPES = [(64, 33), (257,), (8, 3, 5, 5), (1000,)]


def _state_of(optimizer, params):
    return [optimizer.state.get(p, {}).get("momentum_buffer") for p in params]


def _distance(params, buffers, oracle_params, oracle_buffers):
    """Summed absolute error of the parameters and momentum buffers against the oracle's."""
    pairs = [(b, c) for b, c in zip(buffers, oracle_buffers) if c is not None]
    return distance([*params, *(b for b, _ in pairs)], [*oracle_params, *(c for _, c in pairs)]).total_abs


@given(
    dtype=st.sampled_from([torch.bfloat16, torch.float16]),
    kwargs=hyperparameters(),
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 6),
)
def test_never_less_accurate_than_torch(cpu_path, dtype, kwargs, seed, steps):
    generator = torch.Generator().manual_seed(seed)
    initial = [torch.randn(shape, generator=generator).to(dtype) for shape in SHAPES]
    reference = [torch.nn.Parameter(t.clone()) for t in initial]
    candidate = [torch.nn.Parameter(t.clone()) for t in initial]
    ref_opt = torch.optim.SGD(reference, **kwargs)
    cand_opt = tritonopt.SGD(candidate, **kwargs)
    oracle_kwargs = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    for step in range(steps):
        # Shared starting point: torch's current state, in tritonopt and in float64.
        buffers = _state_of(ref_opt, reference)
        oracle = [torch.nn.Parameter(p.detach().double()) for p in reference]
        oracle_opt = torch.optim.SGD(oracle, **oracle_kwargs)
        for c, r, o, buffer in zip(candidate, reference, oracle, buffers):
            c.detach().copy_(r.detach())
            if buffer is not None:
                cand_opt.state[c]["momentum_buffer"].copy_(buffer)
                oracle_opt.state[o]["momentum_buffer"] = buffer.double()
            grad = torch.randn(c.shape, generator=generator).to(dtype)
            c.grad, r.grad, o.grad = grad.clone(), grad.clone(), grad.double()
        for optimizer in (cand_opt, ref_opt, oracle_opt):
            optimizer.step()
        oracle_buffers = _state_of(oracle_opt, oracle)
        ours = _distance(candidate, _state_of(cand_opt, candidate), oracle, oracle_buffers)
        theirs = _distance(reference, _state_of(ref_opt, reference), oracle, oracle_buffers)
        note(f"step {step}: tritonopt error {ours:.6g}, torch error {theirs:.6g}")
        assert ours <= theirs, f"step {step}: tritonopt {dtype} error {ours} exceeds torch's {theirs}"
