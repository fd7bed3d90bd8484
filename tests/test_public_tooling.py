"""The tools (``python -m tritonopt.bench``, ``tritonopt.verify``, ``tritonopt.demo``) stand on
public ground: they choose the implementation through ``tritonopt.cpu_implementation`` and
friends, never through the engine's private modules, and verify owns no copy of the demo."""

import ast
from pathlib import Path

import pytest
import torch

import tritonopt

PACKAGE = Path(tritonopt.__file__).parent
TOOLS = sorted([*(PACKAGE / "bench").glob("*.py"), *(PACKAGE / "verify").glob("*.py"), PACKAGE / "demo.py"])
PRIVATE = {"_backend", "_torch_path", "_engine", "_bucket", "_fallback", "_hyperparameters"}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names.update(module.split("."))
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names.update(alias.name.split("."))
    return names


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tools_import_no_private_engine_module(path):
    imported = _imported_modules(path)
    assert not imported & PRIVATE, f"{path.name} imports {sorted(imported & PRIVATE)}"
    if path.parent.name == "verify":
        assert "demo" not in imported, f"{path.name} imports from the demo"


def test_the_implementation_choice_is_public():
    assert {"cpu_implementation", "kernels_interpreted", "uses_triton"} <= set(tritonopt.__all__)
    assert isinstance(tritonopt.kernels_interpreted(), bool)
    with pytest.raises(ValueError, match="not one of"):
        with tritonopt.cpu_implementation("numpy"):
            pass
    with tritonopt.cpu_implementation("torch"):
        assert not tritonopt.uses_triton(torch.device("cpu"))
