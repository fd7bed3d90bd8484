"""A Hypothesis state machine driving a candidate optimizer and a reference through one history.

Random models (0-dim to 4-D, empty, transposed, channels_last, strided, dtypes
mixed in one group), random groups and hyperparameters, and random interleavings
of backward, direct gradient assignment, step (with and without a closure),
hyperparameter changes, zero_grad both ways, add_param_group, state_dict round
trips in every direction and replaced parameter storage (``p.data = ...``).
After every step the two must match (``assertions``; bf16/fp16 by
``low_precision``); where the reference raises, the candidate must raise the
same exception type and still match it.

Every rule takes plain values (indices are reduced modulo the number of
parameters), so Hypothesis prints a failure as code that runs.
"""

import copy
from collections.abc import Callable

import torch
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from torch.optim import Optimizer

from .assertions import LOW_PRECISION, assert_optimizers_match
from .hyperparameters import SGD_HYPERPARAMETERS, HyperparameterSpace
from .low_precision import Float64Oracle, assert_no_less_accurate, share_state
from .tensors import FLOAT_DTYPES, gradient_poison, make_tensor, param_specs, poisoned, random_like

OptimizerFactory = Callable[..., Optimizer]
Invariant = Callable[[Optimizer, str], None]

MAX_PARAMS = 6
GROUP_SLOTS = 3  # a parameter assigned slot GROUP_SLOTS is held back for add_param_group
ROUND_TRIPS = ("candidate->candidate", "reference->candidate", "candidate->reference")


def _wide(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.complex128 if tensor.is_complex() else torch.float64)


def _call_both(reference_call: Callable, candidate_call: Callable):
    """Run both calls; if the reference raises, the candidate must raise the same type.

    Returns ``(reference result, candidate result, reference exception or None)``.
    """
    try:
        reference_result = reference_call()
    except Exception as error:  # noqa: BLE001 - any exception of the reference is the spec
        try:
            candidate_call()
        except Exception as candidate_error:  # noqa: BLE001
            assert type(candidate_error) is type(error), (
                f"the reference raised {error!r}, the candidate {candidate_error!r}"
            )
            return None, None, error
        raise AssertionError(f"the reference raised {error!r}, the candidate did not") from error
    return reference_result, candidate_call(), None


def parity_machine(
    candidate: OptimizerFactory,
    reference: OptimizerFactory,
    *,
    hyperparameters: HyperparameterSpace = SGD_HYPERPARAMETERS,
    dtypes: tuple[torch.dtype, ...] = FLOAT_DTYPES,
    invariant: Invariant | None = None,
    nonfinite: bool = False,
    device: str | torch.device = "cpu",
) -> type[RuleBasedStateMachine]:
    """A state machine class comparing ``candidate`` with ``reference`` (run it with
    ``hypothesis.stateful.run_state_machine_as_test``).

    Both are optimizer classes or factories taking ``(params, **hparams)``.
    ``hyperparameters`` says what each may be built with and how its groups may
    change; ``dtypes`` are the parameter dtypes drawn (several may share a
    group); ``invariant(candidate_optimizer, context)`` is an extra check after
    every step that did not raise; ``nonfinite`` lets assigned gradients carry inf and NaN.
    """
    index = st.integers(0, MAX_PARAMS - 1)

    class Parity(RuleBasedStateMachine):
        @initialize(
            seed=st.integers(0, 2**32 - 1),
            params=st.lists(st.tuples(param_specs(dtypes), st.integers(0, GROUP_SLOTS)), min_size=1, max_size=MAX_PARAMS),
            defaults=hyperparameters.defaults,
            overrides=st.lists(hyperparameters.group, min_size=GROUP_SLOTS, max_size=GROUP_SLOTS),
        )
        def build(self, seed, params, defaults, overrides):
            self.generator = torch.Generator().manual_seed(seed)
            tensors = [make_tensor(spec, self.generator, device) for spec, _ in params]
            self.candidate_params = [torch.nn.Parameter(t) for t in tensors]
            self.reference_params = [torch.nn.Parameter(t.detach().clone()) for t in tensors]
            slots = [slot for _, slot in params]
            used = sorted(set(slots) - {GROUP_SLOTS})
            # With every parameter held back, the first one forms the only group.
            self.layout = [[i for i, s in enumerate(slots) if s == slot] for slot in used] or [[0]]
            group_overrides = [overrides[slot] for slot in used] or overrides[:1]
            grouped = {i for indices in self.layout for i in indices}
            self.held_back = [i for i in range(len(params)) if i not in grouped]
            self.defaults = defaults
            self.candidate = candidate(self._groups(self.candidate_params, group_overrides), **copy.deepcopy(defaults))
            self.reference = reference(self._groups(self.reference_params, group_overrides), **copy.deepcopy(defaults))
            self.steps = 0

        def _groups(self, params, overrides):
            return [
                {"params": [params[i] for i in indices], **copy.deepcopy(o)} for indices, o in zip(self.layout, overrides)
            ]

        def _pick(self, indices):
            return sorted({i % len(self.candidate_params) for i in indices})

        @rule(chosen=st.sets(index, min_size=1))
        def backward(self, chosen):
            """A real backward pass: autograd accumulates into whatever ``.grad`` holds."""
            candidate_loss = reference_loss = 0
            for i in self._pick(chosen):
                weight = random_like(self.candidate_params[i], self.generator)
                candidate_loss = candidate_loss + (self.candidate_params[i] * weight).real.sum()
                reference_loss = reference_loss + (self.reference_params[i] * weight).real.sum()
            candidate_loss.backward()
            reference_loss.backward()

        @rule(i=index, transposed=st.booleans(), poison=gradient_poison(nonfinite))
        def assign_grad(self, i, transposed, poison):
            """A gradient assigned from outside, possibly in another layout, possibly non-finite."""
            i %= len(self.candidate_params)
            grad = poisoned(random_like(self.candidate_params[i], self.generator), poison)
            if grad.dim() >= 2 and transposed:
                grad = grad.transpose(0, 1).contiguous().transpose(0, 1)
            self.candidate_params[i].grad = grad.clone()
            self.reference_params[i].grad = grad.clone()

        @rule()
        def step(self):
            self._step_both(lambda optimizer, params: optimizer.step(), "")

        @rule(chosen=st.sets(index, min_size=1))
        def step_with_closure(self, chosen):
            chosen = self._pick(chosen)
            weights = [random_like(self.candidate_params[i], self.generator) for i in chosen]

            def with_closure(optimizer, params):
                def closure():
                    # In float64: the two sides may hold a parameter in different
                    # layouts, and a float32 sum's rounding depends on the order.
                    loss = sum((_wide(params[i]) * _wide(w)).real.sum() for i, w in zip(chosen, weights))
                    loss.backward()
                    return loss

                return optimizer.step(closure)

            losses = self._step_both(with_closure, " (closure)")
            if losses is not None:
                # The loss is as close as the parameters it sums: compare it in their narrowest dtype.
                dtypes = {self.reference_params[i].real.dtype for i in chosen}
                narrowest = max(dtypes, key=lambda dtype: torch.finfo(dtype).eps)
                torch.testing.assert_close(*(loss.to(narrowest) for loss in losses), equal_nan=True)

        def _step_both(self, take_step, label):
            """One step of both optimizers, then every check; returns (candidate, reference) results."""
            has_low_precision = any(p.dtype in LOW_PRECISION for p in self.reference_params)
            oracle = Float64Oracle(reference, self.defaults, self.reference) if has_low_precision else None
            reference_result, candidate_result, error = _call_both(
                lambda: take_step(self.reference, self.reference_params),
                lambda: take_step(self.candidate, self.candidate_params),
            )
            self.steps += 1
            context = f"step {self.steps}{label}" + (f" (both raised {error!r})" if error else "")
            assert_optimizers_match(self.reference, self.candidate, context, skip_low_precision=True)
            if oracle is not None and error is None:
                oracle.step()
                assert_no_less_accurate(self.candidate, self.reference, oracle, context)
            share_state(self.candidate, self.reference)
            if invariant is not None and error is None:
                # A step that raised promises only that nothing changed (checked above).
                invariant(self.candidate, context)
            return None if error else (candidate_result, reference_result)

        @precondition(lambda self: hyperparameters.mutable)
        @rule(group=st.integers(0, MAX_PARAMS), change=hyperparameters.changes())
        def change_hyperparameter(self, group, change):
            group %= len(self.candidate.param_groups)
            key, value = change
            self.candidate.param_groups[group][key] = value
            self.reference.param_groups[group][key] = copy.deepcopy(value)

        @rule(set_to_none=st.booleans())
        def zero_grad(self, set_to_none):
            self.candidate.zero_grad(set_to_none=set_to_none)
            self.reference.zero_grad(set_to_none=set_to_none)
            for i, (cand, ref) in enumerate(zip(self.candidate_params, self.reference_params)):
                assert (cand.grad is None) == (ref.grad is None), f"zero_grad: parameter {i}'s grad"

        @precondition(lambda self: self.held_back)
        @rule(count=st.integers(1, MAX_PARAMS), extra=hyperparameters.group)
        def add_param_group(self, count, extra):
            indices, self.held_back = self.held_back[:count], self.held_back[count:]
            _call_both(
                lambda: self.reference.add_param_group({"params": [self.reference_params[i] for i in indices], **copy.deepcopy(extra)}),
                lambda: self.candidate.add_param_group({"params": [self.candidate_params[i] for i in indices], **copy.deepcopy(extra)}),
            )

        @rule(direction=st.sampled_from(ROUND_TRIPS))
        def state_dict_round_trip(self, direction):
            """Rebuild one side from the other's state_dict, as a checkpoint restore does."""
            source_name, target_name = direction.split("->")
            source = getattr(self, source_name)
            source_params = getattr(self, f"{source_name}_params")
            target_params = getattr(self, f"{target_name}_params")
            position = {id(p): i for i, p in enumerate(source_params)}
            groups = [{"params": [target_params[position[id(p)]] for p in g["params"]]} for g in source.param_groups]
            target_factory = candidate if target_name == "candidate" else reference
            rebuilt = target_factory(groups, **copy.deepcopy(self.defaults))
            rebuilt.load_state_dict(copy.deepcopy(source.state_dict()))
            setattr(self, target_name, rebuilt)
            assert_optimizers_match(self.reference, self.candidate, f"after {direction} at step {self.steps}")

        @rule(i=index)
        def replace_storage(self, i):
            """``p.data = ...`` gives the candidate's parameter new storage; the next step must notice."""
            param = self.candidate_params[i % len(self.candidate_params)]
            param.data = param.data.clone()

    return Parity
