"""python -m tritonopt.verify: the parity report against torch and a float64 oracle."""

import pytest
import torch

import tritonopt
from tritonopt.verify.__main__ import main
from tritonopt.distance import distance, ulp
from tritonopt.verify.presets import PRESETS
from tritonopt.verify.trajectory import run


def test_ulp_is_the_spacing_of_the_dtype():
    values = torch.tensor([1.0, 1.5, 0.75, -3.0, 0.0, 1e-40], dtype=torch.float64)
    spacing = ulp(values, torch.bfloat16)
    tiny = torch.finfo(torch.bfloat16).tiny
    expected = torch.tensor([2**-7, 2**-7, 2**-8, 2**-6, 2**-7 * tiny, 2**-7 * tiny], dtype=torch.float64)
    torch.testing.assert_close(spacing, expected, rtol=0, atol=0)
    assert (torch.tensor(1.0, dtype=torch.bfloat16) + spacing[0].item()).item() != 1.0


def test_distance_to_the_oracle_in_absolute_terms_and_ulps():
    """One function serves verify, the bf16/fp16 rule and the tests: equal non-finite
    values count zero, a NaN against a number counts infinity, ULPs are the value's dtype's."""
    exact = torch.tensor([1.0, float("inf"), float("nan"), 2.0], dtype=torch.float64)
    values = torch.tensor([1.0 + 2**-7, float("inf"), float("nan"), 2.0], dtype=torch.bfloat16)
    d = distance([values], [exact])
    assert (d.max_abs, d.max_ulp, d.total_abs) == (2**-7, 1.0, 2**-7)
    d = distance([torch.tensor([float("nan")], dtype=torch.float16)], [torch.tensor([0.5], dtype=torch.float64)])
    assert d.max_abs == d.max_ulp == d.total_abs == float("inf")


def _first_step(candidate, dtype):
    preset = PRESETS["lenet"](torch.Generator().manual_seed(0))
    hyperparameters = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-2}
    return run(candidate, torch.optim.SGD, preset, dtype=dtype, steps=1, hyperparameters=hyperparameters, device=torch.device("cpu"))[0]


def test_float32_candidate_is_torch_bit_for_bit(cpu_path):
    report = _first_step(tritonopt.SGD, torch.float32)
    assert report.candidate_vs_torch_ulp == 0
    assert report.candidate.max_abs == report.torch.max_abs > 0  # the oracle is float64, not float32


def test_bfloat16_first_step_is_correctly_rounded(cpu_path):
    """From the same state, tritonopt rounds once: within half an ULP of the float64 step, where torch's
    op-by-op bf16 arithmetic is not."""
    report = _first_step(tritonopt.SGD, torch.bfloat16)
    assert report.candidate.max_ulp <= 0.5 < report.torch.max_ulp


class OneUlpHigh(torch.optim.SGD):
    """A planted bug: every parameter one bf16 ULP up after each step."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.copy_(torch.nextafter(p, torch.full_like(p, float("inf"))))
        return loss


def test_a_one_ulp_error_is_reported():
    report = _first_step(OneUlpHigh, torch.bfloat16)
    assert report.candidate_vs_torch_ulp >= 1


@pytest.mark.parametrize("model", PRESETS)
def test_presets_give_every_parameter_a_gradient(model):
    preset = PRESETS[model](torch.Generator().manual_seed(0))
    gradients = torch.autograd.grad(preset.loss(preset.model), list(preset.model.parameters()))
    assert all(g.abs().sum() > 0 for g in gradients)


def test_command_prints_every_step_and_writes_a_plot(tmp_path, capsys):
    assert main(["--optimizer", "sgd", "--dtype", "bfloat16", "--steps", "2", "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "tritonopt.sgd.SGD vs torch.optim.SGD, bfloat16, lenet" in output
    rows = [line.split() for line in output.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"] and all(len(row) == 6 for row in rows)
    assert (tmp_path / "verify-sgd-bfloat16-lenet.png").read_bytes().startswith(b"\x89PNG")


def test_rounding_report_counts_bytes_and_runs_every_setup(tmp_path):
    """``verify --rounding``'s measurements on two steps: every setup trains, and the
    bytes per parameter are the setups' (fp32 master 14, Kahan 8, pure bf16 6)."""
    from tritonopt.verify import precision

    with tritonopt.cpu_implementation("torch"):
        results = precision.compare(steps=2, trajectory_steps=2, batch=2, vocab=128, width=32, layers=1)
        times = {"torch path": precision.step_times(rounds=1, largest_only=True)}
    assert [r.bytes_per_parameter for r in results] == [14.0, 10.0, 6.0, 6.0, 6.0, 8.0]
    assert all(len(r.distance) == 2 and len(r.losses) == 2 and r.final_loss > 0 for r in results)
    table = precision.report(results, times, "python -m tritonopt.verify --rounding")
    assert "| bf16 + Kahan (tritonopt) | 8.0 |" in table and "| torch path | kahan |" in table
    precision.save_plot(results, "two steps", tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 0
