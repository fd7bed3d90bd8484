"""The tools (``python -m tritonopt.bench``, ``tritonopt.verify``, ``tritonopt.demo``) stand on
public ground: they choose the implementation through ``tritonopt.cpu_implementation`` and
friends and the launch configuration through ``tritonopt.kernels.override_launch_config``,
never through a private module or name of tritonopt, and verify owns no copy of the demo."""

import ast
from pathlib import Path

import pytest
import torch

import tritonopt
import tritonopt.kernels

PACKAGE = Path(tritonopt.__file__).parent
TOOLS = sorted([*(PACKAGE / "bench").glob("*.py"), *(PACKAGE / "verify").glob("*.py"), PACKAGE / "demo.py"])


def _tritonopt_imports(path: Path) -> set[str]:
    """Every dotted tritonopt name a tool imports (absolute or relative), the imported names included."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "tritonopt"):
            module = "." * node.level + (node.module or "")
            names.update(f"{module}{'' if module.endswith('.') else '.'}{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "tritonopt")
    return names


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tools_import_nothing_private_from_tritonopt(path):
    imported = _tritonopt_imports(path)
    private = sorted(name for name in imported if any(part.startswith("_") for part in name.split(".")))
    assert not private, f"{path.name} imports {private}"
    if path.parent.name == "verify":
        assert not any("demo" in name.split(".") for name in imported), f"{path.name} imports from the demo"


def test_the_guard_sees_private_imports(tmp_path):
    tool = tmp_path / "tool.py"
    tool.write_text("from tritonopt.kernels import _launch\nfrom .._engine import FlatOptimizer\nfrom . import _bucket\nimport torch._dynamo\n")
    assert _tritonopt_imports(tool) == {"tritonopt.kernels._launch", ".._engine.FlatOptimizer", "._bucket"}


def test_the_implementation_and_launch_choices_are_public():
    assert {"cpu_implementation", "kernels_interpreted", "uses_triton"} <= set(tritonopt.__all__)
    assert {"override_launch_config", "device_key"} <= set(tritonopt.kernels.__all__)
    assert isinstance(tritonopt.kernels_interpreted(), bool)
    with pytest.raises(ValueError, match="not one of"):
        with tritonopt.cpu_implementation("numpy"):
            pass
    with tritonopt.cpu_implementation("torch"):
        assert not tritonopt.uses_triton(torch.device("cpu"))
