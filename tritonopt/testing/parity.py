"""``assert_parity``: the state machine run as one assertion, with a runnable reproduction."""

import importlib
from functools import reduce

import torch
from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from .hyperparameters import SGD_HYPERPARAMETERS, HyperparameterSpace
from .machine import Invariant, OptimizerFactory, parity_machine
from .tensors import FLOAT_DTYPES


def _as_space(hyperparameters) -> HyperparameterSpace:
    """A plain strategy of keyword-argument dicts builds optimizers and changes nothing mid-run."""
    if isinstance(hyperparameters, HyperparameterSpace):
        return hyperparameters
    return HyperparameterSpace(name=repr(hyperparameters), defaults=hyperparameters, group=st.just({}))


def _spelled(obj) -> tuple[str, str]:
    """An import line and the shortest dotted name that reaches ``obj`` (a class or function)."""
    module = getattr(obj, "__module__", None) or "__main__"
    qualname = getattr(obj, "__qualname__", repr(obj))
    parts = module.split(".")
    for length in range(1, len(parts) + 1):
        prefix = ".".join(parts[:length])
        try:
            found = reduce(getattr, qualname.split("."), importlib.import_module(prefix))
        except (ImportError, AttributeError):
            continue
        if found is obj:
            return f"import {prefix}", f"{prefix}.{qualname}"
    return f"import {module}", f"{module}.{qualname}"


def _reproduction(candidate, reference, space, dtypes, invariant, nonfinite, steps: str) -> str:
    imports = [
        "from math import inf, nan",
        "import torch",
        "from torch import tensor",
        "from tritonopt.testing import ParamSpec, parity_machine",
    ]
    names = []
    for obj in (candidate, reference, invariant):
        if obj is None:
            names.append("None")
            continue
        line, name = _spelled(obj)
        imports.append(line)
        names.append(name)
    if space.name.isidentifier():
        imports.append("import tritonopt.testing")
    header = "\n".join(dict.fromkeys(imports))
    machine = (
        f"Parity = parity_machine({names[0]}, {names[1]}, hyperparameters={space!r}, "
        f"dtypes={dtypes!r}, invariant={names[2]}, nonfinite={nonfinite!r})"
    )
    return f"{header}\n\n{machine}\n{steps}"


def _replayed_steps(notes: str) -> str:
    """The lines of Hypothesis' report that replay the failing history (``state = Parity()`` to teardown)."""
    lines = notes.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("state = ")), 0)
    end = next((i for i, line in enumerate(lines) if line.startswith("state.teardown()")), len(lines) - 1)
    return "\n".join(lines[start : end + 1])


def assert_parity(
    candidate: OptimizerFactory,
    reference: OptimizerFactory,
    *,
    hyperparameters: HyperparameterSpace | st.SearchStrategy[dict] = SGD_HYPERPARAMETERS,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
    max_examples: int | None = None,
    steps: int | None = None,
    invariant: Invariant | None = None,
    nonfinite: bool = False,
    device: str | torch.device = "cpu",
) -> None:
    """Check that ``candidate`` behaves as ``reference`` on random models and histories.

    ``candidate`` and ``reference`` are optimizer classes or factories taking
    ``(params, **hparams)``. ``hyperparameters`` is a :class:`HyperparameterSpace`
    (``SGD_HYPERPARAMETERS``, ``ADAM_HYPERPARAMETERS``, ``ADAMW_HYPERPARAMETERS``)
    or a strategy of constructor keyword arguments. ``max_examples`` (histories)
    and ``steps`` (actions per history) default to the loaded Hypothesis profile.
    On divergence raises AssertionError with Hypothesis' shrunk history printed
    as a program that replays it.
    """
    space = _as_space(hyperparameters)
    machine = parity_machine(
        candidate, reference, hyperparameters=space, dtypes=dtypes, invariant=invariant, nonfinite=nonfinite, device=device
    )
    chosen = {"max_examples": max_examples, "stateful_step_count": steps}
    # The explain phase replays the failure many times over to mark lines; the
    # reproduction already says what failed.
    phases = [phase for phase in settings().phases if phase is not Phase.explain]
    run_settings = settings(
        settings(),
        deadline=None,
        report_multiple_bugs=False,
        phases=phases,
        **{k: v for k, v in chosen.items() if v is not None},
    )
    try:
        run_state_machine_as_test(machine, settings=run_settings)
    except Exception as error:  # noqa: BLE001 - any failure of the history is a divergence
        falsifying = _replayed_steps("\n".join(getattr(error, "__notes__", [])))
        program = _reproduction(candidate, reference, space, dtypes, invariant, nonfinite, falsifying)
        raise AssertionError(
            f"{_spelled(candidate)[1]} diverged from {_spelled(reference)[1]}: {type(error).__name__}: {error}\n\n"
            f"Minimal reproducing example (runs as a script):\n\n{program}"
        ) from error
