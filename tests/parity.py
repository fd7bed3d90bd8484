"""Parity assertions and parameter builders shared by the tests.

Tolerance table (one place):
  float32, float64, complex: ``torch.testing.assert_close`` defaults, at every step.
  bfloat16, float16: never less accurate than torch in that dtype, measured as the
  distance to a float64 run of the same trajectory (see ``test_low_precision``).
"""

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

LAYOUTS = ("contiguous", "transposed", "channels_last", "strided")


@dataclass(frozen=True)
class ParamSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    layout: str = "contiguous"


def _random(shape, dtype, generator, device):
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


def make_tensor(spec: ParamSpec, generator: torch.Generator, device="cpu") -> torch.Tensor:
    """A random tensor of ``spec.shape`` in ``spec.layout`` (dense permutations or a strided slice)."""
    shape = spec.shape
    if spec.layout == "transposed":
        return _random(shape[::-1], spec.dtype, generator, device).permute(*reversed(range(len(shape))))
    if spec.layout == "channels_last":
        return _random(shape, spec.dtype, generator, device).to(memory_format=torch.channels_last)
    if spec.layout == "strided":
        wide = shape[:-1] + (2 * shape[-1],)
        return _random(wide, spec.dtype, generator, device)[..., ::2]
    return _random(shape, spec.dtype, generator, device)


def random_like(tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random values (never all zeros) with ``tensor``'s shape, dtype and device."""
    return _random(tensor.shape, tensor.dtype, generator, tensor.device)


@st.composite
def param_specs(draw, dtypes=(torch.float32, torch.float64)) -> ParamSpec:
    """Shapes from 0-dim to 4-D (empty included) in every layout they allow."""
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    if ndim and draw(st.integers(0, 9)) == 0:
        shape = shape[:-1] + (0,)
    layouts = ["contiguous"]
    if ndim >= 2:
        layouts.append("transposed")
    if ndim == 4:
        layouts.append("channels_last")
    if ndim >= 1:
        layouts.append("strided")
    return ParamSpec(shape, draw(st.sampled_from(dtypes)), draw(st.sampled_from(layouts)))


@st.composite
def hyperparameters(draw) -> dict:
    """Valid ``torch.optim.SGD`` hyperparameters, each switch on and off."""
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]) | st.floats(0.0, 0.95))
    dampening = draw(st.just(0.0) | st.floats(0.0, 0.9))
    values = {
        "lr": draw(st.floats(1e-3, 0.5)),
        "momentum": momentum,
        "dampening": dampening,
        "weight_decay": draw(st.just(0.0) | st.floats(0.0, 0.1)),
        "maximize": draw(st.booleans()),
    }
    if momentum > 0 and dampening == 0:
        values["nesterov"] = draw(st.booleans())
    if draw(st.integers(0, 4)) == 0:
        values["lr"] = torch.tensor([values["lr"]])
    return values


def assert_optimizers_match(reference, candidate, context: str) -> None:
    """Parameters, optimizer state and hyperparameters of ``candidate`` equal ``reference``'s.

    The message names the context (e.g. the step), the group and the parameter.
    """
    assert len(candidate.param_groups) == len(reference.param_groups), context
    for g, (ref_group, cand_group) in enumerate(zip(reference.param_groups, candidate.param_groups)):
        ref_hparams = {k: v for k, v in ref_group.items() if k != "params"}
        cand_hparams = {k: v for k, v in cand_group.items() if k != "params"}
        assert repr(cand_hparams) == repr(ref_hparams), f"{context}: group {g} hyperparameters differ"
        for i, (ref_p, cand_p) in enumerate(zip(ref_group["params"], cand_group["params"], strict=True)):
            where = f"{context}, group {g}, parameter {i} {tuple(cand_p.shape)} {cand_p.dtype}"
            torch.testing.assert_close(
                cand_p.detach(), ref_p.detach(), msg=lambda m, w=where: f"{w}: parameter diverged\n{m}"
            )
            ref_state = reference.state.get(ref_p, {})
            cand_state = candidate.state.get(cand_p, {})
            assert set(cand_state) == set(ref_state), (
                f"{where}: state keys {sorted(cand_state)} but torch has {sorted(ref_state)}"
            )
            for key, ref_value in ref_state.items():
                torch.testing.assert_close(
                    cand_state[key], ref_value, msg=lambda m, w=where, k=key: f"{w}: state {k!r} diverged\n{m}"
                )
