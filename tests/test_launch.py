"""The launch table: rows chosen by device and size, the sweep's override, and whether kernels read it."""

import pytest
import torch

import tritonopt
from tritonopt.kernels import _launch
from tritonopt.kernels._launch import LaunchConfig, launch_config, override_launch_config, table_config

from conftest import DEVICE


@pytest.fixture
def table(monkeypatch):
    rows = {
        "default": ((None, 1024, 4),),
        "cuda:sm_90": ((65_536, 512, 2), (2**24, 2048, 4), (None, 4096, 8)),
    }
    monkeypatch.setattr(_launch, "LAUNCH_TABLE", rows)
    return rows


def test_first_row_covering_the_size_wins(table):
    assert table_config("cuda:sm_90", 1) == LaunchConfig(512, 2)
    assert table_config("cuda:sm_90", 65_536) == LaunchConfig(512, 2)
    assert table_config("cuda:sm_90", 65_537) == LaunchConfig(2048, 4)
    assert table_config("cuda:sm_90", 2**24 + 1) == LaunchConfig(4096, 8)
    assert _launch.table_configs("cuda:sm_90") == [LaunchConfig(512, 2), LaunchConfig(2048, 4), LaunchConfig(4096, 8)]


def test_devices_without_an_entry_use_the_default(table):
    assert table_config("cuda:sm_80", 2**30) == LaunchConfig(1024, 4)
    assert launch_config(torch.device("cpu"), 10) == LaunchConfig(1024, 4)
    assert _launch.device_key(torch.device("cpu")) == "cpu"


def test_a_table_without_a_catch_all_row_is_an_error(monkeypatch):
    monkeypatch.setattr(_launch, "LAUNCH_TABLE", {"default": ((100, 1024, 4),)})
    with pytest.raises(ValueError, match="no row for 101 elements"):
        table_config("cpu", 101)


def test_override_applies_inside_counts_lookups_and_restores(table):
    cpu = torch.device("cpu")
    with override_launch_config(4096, 8) as lookups:
        assert launch_config(cpu, 1) == LaunchConfig(4096, 8)
        with override_launch_config(512, 2):
            assert launch_config(cpu, 1) == LaunchConfig(512, 2)
        assert launch_config(cpu, 1) == LaunchConfig(4096, 8)
    assert lookups == [3]
    assert launch_config(cpu, 1) == LaunchConfig(1024, 4)
    with pytest.raises(ValueError, match="power of two"):
        with override_launch_config(1000, 4):
            pass


def test_the_shipped_table_ends_every_entry_with_a_catch_all_row():
    for key, rows in _launch.LAUNCH_TABLE.items():
        assert rows[-1][0] is None, key
        bounds = [largest for largest, _, _ in rows[:-1]]
        assert bounds == sorted(bounds), key
        for _, block_size, num_warps in rows:
            assert block_size & (block_size - 1) == 0 and num_warps in (1, 2, 4, 8, 16), key


@pytest.mark.skipif(not tritonopt.kernels_interpreted() and DEVICE.type != "cuda", reason="needs runnable kernels")
@pytest.mark.parametrize("optimizer_class", [tritonopt.SGD, tritonopt.AdamW])
def test_kernel_launches_take_their_configuration_from_launch_config(optimizer_class):
    """What the sweep relies on: an override reaches every launch of a step."""
    param = torch.nn.Parameter(torch.randn(3000, device=DEVICE))
    param.grad = torch.randn(3000, device=DEVICE)
    optimizer = optimizer_class([param], lr=0.1)
    with override_launch_config(512, 2) as lookups:
        optimizer.step()
    assert lookups[0] >= 1
