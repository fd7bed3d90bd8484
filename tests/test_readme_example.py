"""The README's "Verify your own optimizer" example runs, and its planted bug is caught."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_verify_your_own_optimizer_example_runs(capsys):
    section = README.read_text().split("## Verify your own optimizer", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    assert "ignores_dampening diverged from torch.optim.SGD" in printed
    assert "state = Parity()" in printed and "state.teardown()" in printed
