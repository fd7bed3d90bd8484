"""pytest-benchmark suite: one optimizer step per (case, implementation) of the quick preset.

``make bench`` runs it. The cases, implementations and warm-up are
``tritonopt.bench``'s, so this suite and ``python -m tritonopt.bench`` time the same
steps; the CLI adds GB/s against the copy bandwidth, launches, host time, memory
and the chart. ``TRITONOPT_BENCH_DEVICE=cuda`` runs it on a GPU.
"""

import os

import pytest
import torch

from tritonopt.bench.cases import default_cases
from tritonopt.bench.implementations import implementations
from tritonopt.bench.run import build_instance
from tritonopt.bench.timing import synchronize

DEVICE = torch.device(os.environ.get("TRITONOPT_BENCH_DEVICE", "cpu"))
CASES = default_cases(DEVICE.type, quick=True)
IMPLEMENTATIONS = implementations(interpreter=False)
ROUNDS = 5


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS, ids=[i.name for i in IMPLEMENTATIONS])
def test_step(benchmark, case, implementation):
    reason = implementation.unavailable(case, DEVICE)
    if reason:
        pytest.skip(reason)
    instance = build_instance(case, implementation, DEVICE, warmup=2)

    def step():
        instance.step()
        synchronize(DEVICE)

    benchmark.group = case.name
    # a new_grads case sets its next gradients in setup, outside the timing
    benchmark.pedantic(step, setup=instance.before_step, rounds=ROUNDS, iterations=1)
    benchmark.extra_info["minimal_bytes"] = case.minimal_bytes
    benchmark.extra_info["gb_per_s"] = case.minimal_bytes / benchmark.stats.stats.median / 1e9
