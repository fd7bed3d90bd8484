"""The benchmark's own plumbing: the summary's pairing of cases, and new gradients every step.

No timing is asserted: rows get made-up times, and steps are checked for what they read.
"""

import torch

from tritonopt.bench import summary
from tritonopt.bench.cases import GRAD_SETS, default_cases, with_new_grads
from tritonopt.bench.implementations import implementations
from tritonopt.bench.run import Row, build_instance

CASES = default_cases("cpu", quick=True)


def _rows(host_us_of):
    rows = []
    for case in CASES:
        for name in ("tritonopt", "torch fused"):
            host_us = host_us_of(case, name)
            rows.append(Row(case.name, name, case.tensors, case.elements, len(case.groups), case.minimal_bytes,
                            median_ms=host_us / 1e3, host_us=host_us))
    return rows


def test_each_many_groups_case_is_paired_with_its_one_group_twin():
    # 10 us per tensor, plus 7 us per group for tritonopt
    rows = _rows(lambda case, name: 10.0 * case.tensors + (7.0 * len(case.groups) if name == "tritonopt" else 0.0))
    result = summary.summarize(CASES, rows, copy_gb_per_s=10.0)
    pairs = {(r["case"], r["twin"]) for r in result["per_group"]}
    assert pairs == {
        ("SGD momentum+wd float32 100 groups x20x100", "SGD momentum+wd float32 1 group x2000x100"),
        ("SGD momentum+wd float32 500 groups x20x100", "SGD momentum+wd float32 1 group x10000x100"),
    }
    for record in result["per_group"]:
        expected = 7.0 * (record["groups"] - 1) / record["groups"] if record["implementation"] == "tritonopt" else 0.0
        assert abs(record["us_per_group"] - expected) < 1e-9


def test_per_parameter_figures_come_from_single_group_cases_of_many_tensors():
    rows = _rows(lambda case, name: 10.0 * case.tensors)
    result = summary.summarize(CASES, rows, copy_gb_per_s=10.0)
    cases = {r["case"] for r in result["per_parameter"]}
    assert cases == {
        "SGD momentum+wd float32 2000x1000", "SGD momentum+wd float32 2000x1008",
        "SGD momentum+wd float32 1 group x2000x100", "SGD momentum+wd float32 1 group x10000x100",
    }
    assert all(r["us_per_tensor"] == 10.0 for r in result["per_parameter"])
    assert "host us per parameter" in summary.text(result)


def test_new_grads_cases_are_compared_with_their_in_place_twins():
    rows = _rows(lambda case, name: 2000.0 if case.new_grads else 1000.0)
    result = summary.summarize(CASES, rows, copy_gb_per_s=10.0)
    assert {(r["case"], r["twin"]) for r in result["new_grads"]} == {
        (f"{name} new grads", name)
        for name in (
            "SGD momentum+wd float32 2000x1000", "SGD momentum+wd float32 gpt2-small/8 2 groups",
            "SGD momentum+wd float32 2000x1008", "AdamW default float32 gpt2-small/8 2 groups",
        )
    }
    assert all(r["ratio"] == 2.0 for r in result["new_grads"])


def test_with_new_grads_adds_each_twin_once():
    twice = with_new_grads(with_new_grads(CASES[:3]))
    assert [c.name for c in twice] == [name for c in CASES[:3] for name in (c.name, c.name + " new grads")]


def test_a_new_grads_case_reads_other_gradient_tensors_every_step_in_every_implementation():
    case = next(c for c in default_cases("cpu", quick=False, tiny=True))
    case = with_new_grads([case])[1]
    for implementation in implementations(interpreter=False):
        if implementation.name == "torch.compile":
            continue
        instance = build_instance(case, implementation, torch.device("cpu"), warmup=0)
        params = [p for group in instance.optimizer.param_groups for p in group["params"]]
        seen = []
        for _ in range(2 * GRAD_SETS):
            instance.before_step()
            seen.append(tuple(p.grad.data_ptr() for p in params))
            instance.step()
        assert all(a != b for a, b in zip(seen, seen[1:])), implementation.name
        assert len(set(seen)) == GRAD_SETS, implementation.name
