"""The launch sweep: how measurements become ``LAUNCH_TABLE`` rows, and a whole tiny run."""

import json

import pytest

import tritonopt
from tritonopt.bench import sweep


def _measurement(optimizer, size, block_size, num_warps, kernel_ms):
    return dict(optimizer=optimizer, size=size, block_size=block_size, num_warps=num_warps,
                step_ms=100.0, kernel_ms=kernel_ms)


SIZES = {"small": (500, 20, 1_000), "mid": (1, 1, 2**20), "large": (1, 1, 2**26)}


def test_each_size_takes_its_best_config_for_all_optimizers_and_rows_split_between_sizes():
    times = {
        # (size, block, warps): (SGD ms, AdamW ms)
        ("small", 512, 2): (1.0, 3.0),   # best for SGD, bad for AdamW
        ("small", 1024, 4): (1.1, 1.1),  # best on the mean of time / best time
        ("small", 512, 8): (0.5, 0.5),   # fastest, but 2 elements per thread: not eligible
        ("mid", 1024, 4): (2.0, 2.0),
        ("mid", 2048, 4): (2.5, 2.5),
        ("large", 4096, 8): (10.0, 10.0),
        ("large", 1024, 4): (11.0, 11.0),
    }

    def measurements():
        return [
            _measurement(name, size, block, warps, ms)
            for (size, block, warps), pair in times.items()
            for name, ms in zip(("SGD", "AdamW"), pair)
        ]

    # small (20,000 elements per launch) and mid (2^20) agree: one row up to between mid and large
    assert sweep.propose(measurements(), SIZES) == [[2**23, 1024, 4], [None, 4096, 8]]
    times[("mid", 2048, 4)] = (1.0, 1.0)
    assert sweep.propose(measurements(), SIZES) == [
        [int((20_000 * 2**20) ** 0.5), 1024, 4], [2**23, 2048, 4], [None, 4096, 8]
    ]


def test_a_config_measured_for_one_optimizer_only_is_not_proposed():
    measurements = [
        _measurement("SGD", "large", 1024, 4, 2.0),
        _measurement("AdamW", "large", 1024, 4, 3.0),
        _measurement("SGD", "large", 4096, 8, 1.0),  # AdamW's run was cut short
    ]
    assert sweep.propose(measurements, {"large": (1, 1, 2**26)}) == [[None, 1024, 4]]
    assert sweep.propose([], SIZES) == []


def test_step_time_stands_in_for_kernel_time_off_cuda():
    measurements = [
        dict(optimizer="SGD", size="large", block_size=1024, num_warps=4, step_ms=2.0, kernel_ms=None),
        dict(optimizer="SGD", size="large", block_size=2048, num_warps=4, step_ms=1.0, kernel_ms=None),
    ]
    assert sweep.propose(measurements, {"large": (1, 1, 2**26)}) == [[None, 2048, 4]]


@pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="needs kernels that run on CPU tensors")
def test_a_tiny_run_measures_through_the_public_optimizers_and_writes_the_entry(tmp_path, monkeypatch, capsys):
    """The kernels' launches read ``launch_config``, so the run completes; this is the
    GPU run's code path at one configuration."""
    out = tmp_path / "sweep.json"
    assert sweep.main(["--device", "cpu", "--tiny", "--repeats", "2", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["complete"] and record["device_key"] == "cpu"
    assert [(m["optimizer"], m["launch_config_calls"] > 0) for m in record["measurements"]] == [
        ("SGD", True), ("AdamW", True)
    ]
    assert record["proposed_rows"] == [[None, 1024, 4]]
    assert "'cpu': ((None, 1024, 4),)," in capsys.readouterr().out


@pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="needs kernels that run on CPU tensors")
def test_a_run_whose_launches_never_read_the_table_stops_and_says_so(tmp_path, monkeypatch):
    for optimizer_class in (tritonopt.SGD, tritonopt.AdamW):
        monkeypatch.setattr(optimizer_class, "kernel_update", staticmethod(lambda *args, **kwargs: None))
    out = tmp_path / "sweep.json"
    assert sweep.main(["--device", "cpu", "--tiny", "--repeats", "2", "--out", str(out)]) == 3
    record = json.loads(out.read_text())
    assert not record["complete"] and "do not read the launch table" in record["error"]
    assert len(record["measurements"]) == 1
