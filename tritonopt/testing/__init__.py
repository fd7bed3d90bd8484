"""Property-based parity testing for torch.optim-style optimizers (needs ``hypothesis``).

Point it at any optimizer class or factory taking ``(params, **hparams)``::

    from tritonopt.testing import ADAMW_HYPERPARAMETERS, assert_parity
    assert_parity(MyAdamW, torch.optim.AdamW, hyperparameters=ADAMW_HYPERPARAMETERS)

The pieces are public too: parameter and gradient strategies (``tensors``),
hyperparameter spaces per optimizer (``hyperparameters``), the state machine
(``machine``), the step-by-step comparison (``assertions``) and the bf16/fp16
rule (``low_precision``).
"""

from .assertions import LOW_PRECISION, assert_optimizers_match
from .hyperparameters import (
    ADAM_HYPERPARAMETERS,
    ADAMW_HYPERPARAMETERS,
    SGD_HYPERPARAMETERS,
    HyperparameterSpace,
    adam_hyperparameters,
    adamw_hyperparameters,
    sgd_hyperparameters,
)
from .low_precision import Float64Oracle, assert_no_less_accurate, share_state
from .machine import parity_machine
from .parity import assert_parity
from .tensors import LAYOUTS, ParamSpec, make_tensor, param_specs, poisoned, random_like

__all__ = [
    "ADAM_HYPERPARAMETERS",
    "ADAMW_HYPERPARAMETERS",
    "LAYOUTS",
    "LOW_PRECISION",
    "SGD_HYPERPARAMETERS",
    "Float64Oracle",
    "HyperparameterSpace",
    "ParamSpec",
    "adam_hyperparameters",
    "adamw_hyperparameters",
    "assert_no_less_accurate",
    "assert_optimizers_match",
    "assert_parity",
    "make_tensor",
    "param_specs",
    "parity_machine",
    "poisoned",
    "random_like",
    "share_state",
    "sgd_hyperparameters",
]
