"""How a group's results are stored: rounding mode, state dtype and the random stream.

Each param group may carry ``rounding`` (``"nearest"``, the default, ``"stochastic"``
or ``"kahan"``), ``state_dtype`` (None: the parameters' dtype) and, for stochastic
rounding, ``seed`` and ``rounding_step`` (the random stream's key and position,
advanced once per step; both travel in ``state_dict``'s param groups, so a resumed
run draws the same bits). The keys are only present when a group uses them, so a
default optimizer's param groups are torch's.
"""

from collections.abc import Iterable
from typing import Any, NamedTuple

import torch

from .kernels._rounding import ROUNDING_MODES

STATE_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
_SIXTEEN_BIT = (torch.bfloat16, torch.float16)


def draw_seed() -> int:
    """A seed for stochastic rounding from torch's default generator (``torch.manual_seed``
    makes it reproducible)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())


def defaults(rounding: str, state_dtype: torch.dtype | None, seed: int | None) -> dict[str, Any]:
    """The constructor's storage keywords as param-group defaults: only those that differ
    from tritonopt's (and torch's) behaviour, checked."""
    entries: dict[str, Any] = {}
    if rounding != "nearest":
        entries["rounding"] = rounding
    if state_dtype is not None:
        entries["state_dtype"] = state_dtype
    if seed is not None:
        entries["seed"] = seed
    check_group(entries)
    if rounding == "stochastic" and seed is None:
        entries["seed"] = draw_seed()
    return entries


def check_group(group: dict[str, Any]) -> None:
    """Raise for a group's unknown rounding mode, state dtype or seed; give a stochastic
    group its random stream."""
    rounding = group.get("rounding", "nearest")
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"Invalid rounding: {rounding!r}; expected one of {tuple(ROUNDING_MODES)}")
    state_dtype = group.get("state_dtype")
    if state_dtype is not None and state_dtype not in STATE_DTYPES:
        raise ValueError(f"Invalid state_dtype: {state_dtype!r}; expected None or one of {STATE_DTYPES}")
    seed = group.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ValueError(f"Invalid seed: {seed!r}; expected an int in [0, 2**64)")
    if rounding == "stochastic":
        group.setdefault("seed", draw_seed())
        group.setdefault("rounding_step", 0)


def state_dtypes(group: dict[str, Any], keys: Iterable[str], dtype: torch.dtype) -> dict[str, torch.dtype]:
    """The state keys a bucket of ``dtype`` parameters keeps in another dtype (real
    floating parameters only; the compensation always has the parameters' dtype)."""
    state_dtype = group.get("state_dtype")
    if state_dtype is None or state_dtype == dtype or not dtype.is_floating_point:
        return {}
    return {key: state_dtype for key in keys if key != "compensation"}


def bucket_keys(keys: tuple[str, ...], group: dict[str, Any], dtype: torch.dtype) -> tuple[str, ...]:
    """A group's state keys for a bucket of ``dtype``, with ``compensation`` for 16-bit
    parameters under Kahan rounding (fp32 and fp64 parameters are stored as computed)."""
    if group.get("rounding") == "kahan" and dtype in _SIXTEEN_BIT:
        return keys + ("compensation",)
    return keys


def switches(group: dict[str, Any], bucket) -> dict[str, Any]:
    """The launch keywords a group's storage sets: ``rounding`` and ``state_dtype``."""
    return {
        "rounding": group.get("rounding", "nearest"),
        "state_dtype": next(iter(bucket.state_dtypes.values()), None),
    }


def with_random_stream(group: dict[str, Any], row: NamedTuple) -> NamedTuple:
    """A hyperparameter row with the group's seed and stream position (stochastic groups)."""
    if group.get("rounding") != "stochastic":
        return row
    return row._replace(seed=group["seed"], rounding_step=group["rounding_step"])


def advance_random_streams(groups: Iterable[dict[str, Any]]) -> None:
    """One stream position per step for each stochastic group that took part in it."""
    for group in {id(group): group for group in groups}.values():
        if group.get("rounding") == "stochastic":
            group["rounding_step"] += 1


def stream_ids(param_groups: list[dict[str, Any]], index: int) -> dict[int, int]:
    """``id(param) -> stream`` for group ``index``: the parameter's position among all the
    optimizer's parameters, the same in a resumed optimizer built alike."""
    start = sum(len(group["params"]) for group in param_groups[:index])
    return {id(p): start + position for position, p in enumerate(param_groups[index]["params"])}


GROUP_KEYS = ("rounding", "state_dtype", "seed", "rounding_step")
STATE_KEYS = ("compensation",)


def for_torch(state_dict: dict[str, Any]) -> dict[str, Any]:
    """A copy of a tritonopt ``state_dict`` without what torch's optimizers do not know
    (compensation buffers; rounding, state dtype and random stream of the groups),
    warning which keys it dropped. torch's ``load_state_dict`` would keep them
    silently, never read them, and save them again."""
    import warnings

    dropped = set()
    state = {}
    for index, entry in state_dict["state"].items():
        dropped.update(key for key in STATE_KEYS if key in entry)
        state[index] = {key: value for key, value in entry.items() if key not in STATE_KEYS}
    groups = []
    for group in state_dict["param_groups"]:
        dropped.update(key for key in GROUP_KEYS if key in group)
        groups.append({key: value for key, value in group.items() if key not in GROUP_KEYS})
    if dropped:
        order = STATE_KEYS + GROUP_KEYS
        warnings.warn(
            f"for_torch: dropped tritonopt's {', '.join(k for k in order if k in dropped)} "
            "(torch's optimizers do not use them)",
            UserWarning,
            stacklevel=2,
        )
    return {**state_dict, "state": state, "param_groups": groups}
