"""Parity of two optimizers, read through what any torch.optim optimizer exposes.

Tolerance table (one place):
  float32, float64, complex: ``torch.testing.assert_close`` defaults, at every step
  (NaN equal to NaN, so non-finite gradients compare too).
  bfloat16, float16: never less accurate than the reference in that dtype against
  a float64 run of the same step (``low_precision``); ``assert_optimizers_match``
  leaves their values to that rule when told to.
"""

import torch
from torch.optim import Optimizer

LOW_PRECISION = (torch.bfloat16, torch.float16)
# Group keys compared elsewhere (params) or that choose an implementation, not the
# update: a foreach or fused candidate is compared with a for-loop reference.
UNCOMPARED_GROUP_KEYS = frozenset({"params", "foreach", "fused", "capturable", "differentiable"})


def exact(value):
    """``value`` with tensors spelled out in full, so ``==`` compares them bit for bit."""
    if isinstance(value, torch.Tensor):
        return ("tensor", str(value.dtype), tuple(value.shape), repr(value.tolist()))
    if isinstance(value, (tuple, list)):
        return type(value)(exact(v) for v in value)
    return repr(value)


def _compared_values(group: dict) -> dict:
    return {key: exact(value) for key, value in group.items() if key not in UNCOMPARED_GROUP_KEYS}


def assert_optimizers_match(
    reference: Optimizer, candidate: Optimizer, context: str, *, skip_low_precision: bool = False
) -> None:
    """Parameters, ``state_dict()`` state and group hyperparameters of ``candidate`` equal ``reference``'s.

    State is compared per parameter index of ``state_dict()``, so any optimizer
    that keeps torch's state_dict format can be checked. The message names the
    context (e.g. the step), the group and the parameter. ``skip_low_precision``
    leaves bf16/fp16 values to the low-precision rule.
    """
    reference_dict, candidate_dict = reference.state_dict(), candidate.state_dict()
    reference_groups, candidate_groups = reference_dict["param_groups"], candidate_dict["param_groups"]
    assert len(candidate_groups) == len(reference_groups), (
        f"{context}: {len(candidate_groups)} param groups but the reference has {len(reference_groups)}"
    )
    for g, (ref_group, cand_group) in enumerate(zip(reference_groups, candidate_groups)):
        ref_hparams, cand_hparams = _compared_values(ref_group), _compared_values(cand_group)
        differing = sorted(k for k in ref_hparams.keys() | cand_hparams.keys() if ref_hparams.get(k) != cand_hparams.get(k))
        assert not differing, (
            f"{context}: group {g} hyperparameters differ in {differing}: "
            f"{[cand_group.get(k) for k in differing]} vs the reference's {[ref_group.get(k) for k in differing]}"
        )
        params = zip(
            ref_group["params"], reference.param_groups[g]["params"], candidate.param_groups[g]["params"], strict=True
        )
        for i, (index, ref_p, cand_p) in enumerate(params):
            where = f"{context}, group {g}, parameter {i} {tuple(cand_p.shape)} {cand_p.dtype}"
            approximate = skip_low_precision and ref_p.dtype in LOW_PRECISION
            if not approximate:
                torch.testing.assert_close(
                    cand_p.detach(), ref_p.detach(), equal_nan=True, msg=lambda m, w=where: f"{w}: parameter diverged\n{m}"
                )
            ref_state = reference_dict["state"].get(index, {})
            cand_state = candidate_dict["state"].get(index, {})
            assert set(cand_state) == set(ref_state), (
                f"{where}: state keys {sorted(cand_state)} but the reference has {sorted(ref_state)}"
            )
            for key, ref_value in ref_state.items():
                _assert_state_matches(cand_state[key], ref_value, approximate, f"{where}: state {key!r} diverged")


def _assert_state_matches(candidate, reference, approximate: bool, message: str) -> None:
    if not isinstance(reference, torch.Tensor):
        assert exact(candidate) == exact(reference), f"{message}: {candidate!r} vs the reference's {reference!r}"
    elif not (approximate and reference.dtype in LOW_PRECISION):
        torch.testing.assert_close(candidate, reference, equal_nan=True, msg=lambda m: f"{message}\n{m}")
