"""``bench/gpu_check.sh``'s plumbing, on CPU: what the first GPU task runs in its one call.

``--dry-run`` takes the same phases with one tiny case each (install into the results
folder without an index, one kernel test, a one-configuration sweep, a one-case
benchmark), so the script cannot rot between GPU tasks.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tritonopt
from tritonopt.kernels._launch import override_launch_config

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


def _environment() -> dict[str, str]:
    """This python, and none of the test session's switches (the script sets its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRITON", "PYTHONPATH"))}
    # A registry the script must never need: pip fails fast if it tries one.
    env.update(PYTHON=sys.executable, PIP_INDEX_URL="http://127.0.0.1:9/simple")
    return env


def _kernels_read_launch_config() -> bool:
    param = torch.nn.Parameter(torch.randn(64))
    param.grad = torch.randn(64)
    optimizer = tritonopt.SGD([param], lr=0.1, momentum=0.9)
    with override_launch_config(1024, 4) as lookups:
        optimizer.step()
    return lookups[0] > 0


@pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="the dry run's sweep needs the interpreter session's kernels")
@pytest.mark.parametrize("install", ["pip", "copied"])
def test_dry_run_installs_tests_sweeps_and_benchmarks_with_the_table_last(tmp_path, install):
    """``copied``: a python whose pip cannot build the package (here: pip told to require
    hashes, which a source folder has none of) gets the package layout copied instead."""
    out = tmp_path / "results"
    env = _environment() if install == "pip" else dict(_environment(), PIP_REQUIRE_HASHES="1")
    run = subprocess.run([str(SCRIPT), "--dry-run", str(out)], env=env, capture_output=True, text=True, timeout=180)
    lines = run.stdout.rstrip("\n").splitlines()
    sweep_status = 0 if _kernels_read_launch_config() else 3
    summary = re.fullmatch(
        rf"gpu_check: install {install} \(\d+ s\), tests exit 0 \(\d+ s\), sweep exit {sweep_status} \(\d+ s\), "
        rf"benchmark exit 0 \(\d+ s\); results in {re.escape(str(out))}",
        lines[-1],
    )
    assert summary, run.stdout + run.stderr
    assert run.returncode == (0 if sweep_status == 0 else 1)
    assert (out / "summary.txt").read_text() == lines[-1] + "\n"

    # the table is last: the benchmark's reprinted header, then its rows, then the summary
    header = max(i for i, line in enumerate(lines) if line.startswith("$ python -m tritonopt.bench"))
    assert any(line.startswith("tritonopt ") for line in lines[header:-1])
    assert not any(line.startswith("== ") for line in lines[header:])

    assert sorted(path.name for path in out.iterdir()) == [
        "bench.log", "chart.png", "environment.txt", "install.log", "results.json", "summary.txt", "sweep.json",
        "sweep.log", "tests.log",
    ], "results only: the package was installed elsewhere"
    assert "1 passed" in (out / "tests.log").read_text()
    environment = (out / "environment.txt").read_text()
    assert f"torch: {torch.__version__}" in environment
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] and {row["implementation"] for row in results["rows"]} >= {"tritonopt", "torch fused"}
    assert (out / "chart.png").stat().st_size > 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["device_key"] == "cpu" and sweep["measurements"]
    assert sweep["complete"] == (sweep_status == 0)


def test_without_a_cuda_device_nothing_runs(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    run = subprocess.run([str(SCRIPT), str(tmp_path)], env=_environment(), capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert re.search(r"sees no CUDA device in .*python.*; nothing was run", run.stderr), run.stderr
    assert [path.name for path in tmp_path.iterdir()] == ["environment.txt"]


def test_a_python_without_torch_is_named(tmp_path):
    env = dict(_environment(), PYTHON="false")  # a "python" that imports nothing
    run = subprocess.run([str(SCRIPT), "--dry-run", str(tmp_path)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "cannot import torch and triton; set PYTHON" in run.stderr
