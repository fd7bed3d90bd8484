"""Valid hyperparameters per optimizer: for the constructor, for groups, and for changes mid-run.

Tensor learning rates are drawn from a grid of four-decimal values so that a
failure prints them (``tensor([0.0123])``) exactly.
"""

from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st


@dataclass(frozen=True)
class HyperparameterSpace:
    """What a parity run may pass to one optimizer.

    ``defaults`` draws constructor keyword arguments, ``group`` draws a param
    group's own overrides (at construction and in ``add_param_group``), and
    ``mutable`` maps each key that may be reassigned between steps
    (``param_groups[g][key] = value``) to the values it may take.
    """

    name: str
    defaults: st.SearchStrategy[dict]
    group: st.SearchStrategy[dict]
    mutable: dict[str, st.SearchStrategy] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"tritonopt.testing.{self.name}"

    def changes(self) -> st.SearchStrategy[tuple[str, object]]:
        """A ``(key, value)`` assignment to one mutable hyperparameter."""
        return st.one_of(*[st.tuples(st.just(key), values) for key, values in self.mutable.items()])


def _tensor_lr() -> st.SearchStrategy[torch.Tensor]:
    return st.integers(1, 5000).map(lambda k: torch.tensor([k / 10_000]))


def _lr() -> st.SearchStrategy:
    return st.floats(1e-3, 0.5) | _tensor_lr()


# Zero (switch off) or clearly nonzero: a float range alone draws its bound 0.0 too often.
_WEIGHT_DECAY = st.just(0.0) | st.floats(1e-4, 0.1)
_DAMPENING = st.just(0.0) | st.floats(0.05, 0.9)
_MOMENTUM = st.sampled_from([0.0, 0.9]) | st.floats(0.05, 0.95)


@st.composite
def _sgd_defaults(draw) -> dict:
    momentum = draw(_MOMENTUM)
    dampening = draw(_DAMPENING)
    values = {
        "lr": draw(st.floats(1e-3, 0.5)),
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": draw(_WEIGHT_DECAY),
        "maximize": draw(st.booleans()),
    }
    if momentum > 0 and dampening == 0:  # torch rejects nesterov otherwise
        values["nesterov"] = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        values["lr"] = draw(_tensor_lr())
    return values


def sgd_hyperparameters() -> st.SearchStrategy[dict]:
    """Valid ``torch.optim.SGD`` keyword arguments, each switch on and off."""
    return _sgd_defaults()



SGD_HYPERPARAMETERS = HyperparameterSpace(
    name="SGD_HYPERPARAMETERS",
    defaults=sgd_hyperparameters(),
    group=st.fixed_dictionaries(
        {},
        optional={
            "lr": st.floats(1e-3, 0.2),
            "momentum": _MOMENTUM,
            "weight_decay": _WEIGHT_DECAY,
            "maximize": st.booleans(),
        },
    ),
    mutable={
        "lr": _lr(),
        "momentum": _MOMENTUM,
        "dampening": _DAMPENING,
        "weight_decay": _WEIGHT_DECAY,
        "nesterov": st.booleans(),
        "maximize": st.booleans(),
    },
)

_BETAS = st.tuples(st.sampled_from([0.0, 0.9]) | st.floats(0.0, 0.99), st.sampled_from([0.999]) | st.floats(0.5, 0.9999))
_EPS = st.sampled_from([1e-8]) | st.floats(1e-10, 1e-2)


def _adam_options(decoupled: bool) -> dict[str, st.SearchStrategy]:
    options = {
        "lr": _lr(),
        "betas": _BETAS,
        "eps": _EPS,
        "weight_decay": _WEIGHT_DECAY,
        "amsgrad": st.booleans(),
        "maximize": st.booleans(),
    }
    if decoupled:
        options["decoupled_weight_decay"] = st.booleans()
    return options


def adam_hyperparameters(*, decoupled_flag: bool = True) -> st.SearchStrategy[dict]:
    """Valid ``torch.optim.Adam`` keyword arguments (``decoupled_flag=False``: AdamW's, which has no such flag)."""
    return st.fixed_dictionaries({"lr": _lr()}, optional={k: v for k, v in _adam_options(decoupled_flag).items() if k != "lr"})


def adamw_hyperparameters() -> st.SearchStrategy[dict]:
    """Valid ``torch.optim.AdamW`` keyword arguments."""
    return adam_hyperparameters(decoupled_flag=False)


def _adam_group() -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(
        {}, optional={"lr": st.floats(1e-3, 0.2), "betas": _BETAS, "eps": _EPS, "weight_decay": _WEIGHT_DECAY, "amsgrad": st.booleans()}
    )


ADAM_HYPERPARAMETERS = HyperparameterSpace(
    name="ADAM_HYPERPARAMETERS", defaults=adam_hyperparameters(), group=_adam_group(), mutable=_adam_options(True)
)
ADAMW_HYPERPARAMETERS = HyperparameterSpace(
    name="ADAMW_HYPERPARAMETERS", defaults=adamw_hyperparameters(), group=_adam_group(), mutable=_adam_options(False)
)
