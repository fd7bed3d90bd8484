"""Hypothesis drives tritonopt.SGD and torch.optim.SGD through the same random history.

Random models (0-dim to 4-D, empty, transposed, channels_last, strided, float32
and float64 mixed in one group), random groups and hyperparameters, and random
interleavings of backward, direct grad assignment, step (with and without a
closure), hyperparameter mutation, zero_grad both ways, add_param_group,
state_dict round trips in every direction and replaced parameter storage.
After every step the parameters, momentum buffers and hyperparameters must match.
"""

import copy

import pytest
import torch
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test

import tritonopt
from conftest import DEVICE
from parity import assert_optimizers_match, hyperparameters, make_tensor, param_specs, random_like

MUTABLE = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize")


class SGDParity(RuleBasedStateMachine):
    @initialize(data=st.data())
    def build(self, data):
        seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
        self.generator = torch.Generator().manual_seed(seed)
        specs = data.draw(st.lists(param_specs(), min_size=1, max_size=6), label="params")
        tensors = [make_tensor(spec, self.generator, DEVICE) for spec in specs]
        self.candidate_params = [torch.nn.Parameter(t) for t in tensors]
        self.reference_params = [torch.nn.Parameter(t.detach().clone()) for t in tensors]
        n_groups = data.draw(st.integers(1, min(3, len(specs))), label="groups")
        assignment = [data.draw(st.integers(0, n_groups), label=f"group of {i}") for i in range(len(specs))]
        # Parameters assigned to group ``n_groups`` are held back for add_param_group.
        self.held_back = [i for i, g in enumerate(assignment) if g == n_groups]
        layout = [[i for i, g in enumerate(assignment) if g == group] for group in range(n_groups)]
        layout = [indices for indices in layout if indices] or [self.held_back[:1]]
        self.held_back = [i for i in self.held_back if i not in layout[0]]
        defaults = data.draw(hyperparameters(), label="defaults")
        overrides = [data.draw(st.dictionaries(st.sampled_from(["lr", "weight_decay", "maximize"]), st.floats(0.001, 0.2)), label="group overrides") for _ in layout]
        overrides = [{k: (bool(v > 0.1) if k == "maximize" else v) for k, v in o.items()} for o in overrides]
        self.layout = layout
        self.defaults = defaults
        self.candidate = tritonopt.SGD(self._groups(self.candidate_params, overrides), **defaults)
        self.reference = torch.optim.SGD(self._groups(self.reference_params, overrides), **defaults)
        self.steps = 0
        note(f"layout={layout} held_back={self.held_back} defaults={defaults} overrides={overrides}")

    def _groups(self, params, overrides):
        return [{"params": [params[i] for i in indices], **o} for indices, o in zip(self.layout, overrides)]

    def _pairs(self, indices):
        return [(self.candidate_params[i], self.reference_params[i]) for i in indices]

    @rule(data=st.data())
    def backward(self, data):
        """A real backward pass: autograd accumulates into whatever ``.grad`` holds."""
        chosen = data.draw(st.sets(st.integers(0, len(self.candidate_params) - 1), min_size=1), label="backward on")
        note(f"backward on {sorted(chosen)}")
        candidate_loss = reference_loss = 0
        for cand, ref in self._pairs(sorted(chosen)):
            weight = random_like(cand, self.generator)
            candidate_loss = candidate_loss + (cand * weight).sum()
            reference_loss = reference_loss + (ref * weight).sum()
        candidate_loss.backward()
        reference_loss.backward()

    @rule(data=st.data())
    def assign_grad(self, data):
        """A gradient assigned from outside, possibly in another layout."""
        i = data.draw(st.integers(0, len(self.candidate_params) - 1), label="assign grad to")
        cand, ref = self.candidate_params[i], self.reference_params[i]
        grad = random_like(cand, self.generator)
        if grad.dim() >= 2 and data.draw(st.booleans(), label="transposed grad"):
            grad = grad.transpose(0, 1).contiguous().transpose(0, 1)
        note(f"assign grad to {i} (strides {grad.stride()})")
        cand.grad = grad.clone()
        ref.grad = grad.clone()

    @rule()
    def step(self):
        self.candidate.step()
        self.reference.step()
        self.steps += 1
        assert_optimizers_match(self.reference, self.candidate, f"step {self.steps}")
        assert_flat(self.candidate, f"step {self.steps}")

    @rule(data=st.data())
    def step_with_closure(self, data):
        chosen = data.draw(st.lists(st.integers(0, len(self.candidate_params) - 1), min_size=1, unique=True))
        weights = [random_like(self.candidate_params[i], self.generator) for i in chosen]

        def closure_for(params):
            def closure():
                loss = sum((params[i] * w).sum() for i, w in zip(chosen, weights))
                loss.backward()
                return loss

            return closure

        candidate_loss = self.candidate.step(closure_for(self.candidate_params))
        reference_loss = self.reference.step(closure_for(self.reference_params))
        self.steps += 1
        torch.testing.assert_close(candidate_loss, reference_loss)
        assert_optimizers_match(self.reference, self.candidate, f"step {self.steps} (closure)")
        assert_flat(self.candidate, f"step {self.steps} (closure)")

    @rule(data=st.data())
    def mutate_hyperparameter(self, data):
        g = data.draw(st.integers(0, len(self.candidate.param_groups) - 1), label="group")
        key = data.draw(st.sampled_from(MUTABLE), label="key")
        if key in ("nesterov", "maximize"):
            value = data.draw(st.booleans())
        elif key == "lr":
            value = data.draw(st.sampled_from(["decay", "float", "tensor"]))
            current = float(self.reference.param_groups[g]["lr"])
            value = {"decay": current * 0.1, "float": data.draw(st.floats(1e-3, 0.5))}.get(value, torch.tensor([current * 0.5]))
        elif key == "momentum":
            value = data.draw(st.sampled_from([0.0, 0.9]) | st.floats(0.0, 0.95))
        else:
            value = data.draw(st.just(0.0) | st.floats(0.0, 0.1))
        note(f"param_groups[{g}][{key!r}] = {value!r}")
        self.candidate.param_groups[g][key] = value
        self.reference.param_groups[g][key] = copy.deepcopy(value)

    @rule(set_to_none=st.booleans())
    def zero_grad(self, set_to_none):
        self.candidate.zero_grad(set_to_none=set_to_none)
        self.reference.zero_grad(set_to_none=set_to_none)
        for cand, ref in self._pairs(range(len(self.candidate_params))):
            assert (cand.grad is None) == (ref.grad is None)

    @precondition(lambda self: self.held_back)
    @rule(data=st.data())
    def add_param_group(self, data):
        take = data.draw(st.integers(1, len(self.held_back)), label="how many")
        indices, self.held_back = self.held_back[:take], self.held_back[take:]
        extra = data.draw(st.dictionaries(st.sampled_from(["lr", "momentum", "weight_decay"]), st.floats(0.0, 0.5)), label="group hyperparameters")
        extra = {k: max(v, 1e-3) if k == "lr" else v for k, v in extra.items()}
        note(f"add_param_group({indices}, {extra})")
        self.candidate.add_param_group({"params": [self.candidate_params[i] for i in indices], **extra})
        self.reference.add_param_group({"params": [self.reference_params[i] for i in indices], **extra})

    @rule(direction=st.sampled_from(["tritonopt->tritonopt", "torch->tritonopt", "tritonopt->torch"]))
    def state_dict_round_trip(self, direction):
        """Rebuild one side from the other's state_dict, as a checkpoint restore does."""
        note(f"state_dict round trip {direction}")
        source = self.reference if direction.startswith("torch") else self.candidate
        saved = copy.deepcopy(source.state_dict())
        target_class = torch.optim.SGD if direction.endswith("torch") else tritonopt.SGD
        params = self.reference_params if target_class is torch.optim.SGD else self.candidate_params
        groups = [{"params": [params[self._index(p, source)] for p in g["params"]]} for g in source.param_groups]
        rebuilt = target_class(groups, **self.defaults)
        rebuilt.load_state_dict(saved)
        if target_class is torch.optim.SGD:
            self.reference = rebuilt
        else:
            self.candidate = rebuilt
        assert_optimizers_match(self.reference, self.candidate, f"after {direction} at step {self.steps}")

    def _index(self, param, optimizer):
        own = self.reference_params if optimizer is self.reference else self.candidate_params
        return next(i for i, p in enumerate(own) if p is param)

    @rule(data=st.data())
    def replace_storage(self, data):
        """``p.data = ...`` moves a parameter out of its flat buffer; the next step must notice."""
        i = data.draw(st.integers(0, len(self.candidate_params) - 1), label="replace .data of")
        note(f"param {i}.data replaced")
        self.candidate_params[i].data = self.candidate_params[i].data.clone()



def assert_flat(optimizer, context):
    """After a step, each group's parameters, gradients and momentum buffers of one
    dtype live in one storage each: the flat buffers the single launch updates."""
    for g, group in enumerate(optimizer.param_groups):
        by_dtype = {}
        for p in group["params"]:
            by_dtype.setdefault(p.dtype, []).append(p)
        for dtype, params in by_dtype.items():
            tensors = {
                "parameters": params,
                "gradients": [p.grad for p in params if p.grad is not None],
                "momentum buffers": [optimizer.state[p]["momentum_buffer"] for p in params if p in optimizer.state],
            }
            for what, values in tensors.items():
                # An empty tensor holds no elements, so where it points is immaterial.
                storages = {t.untyped_storage().data_ptr() for t in values if t.numel()}
                assert len(storages) <= 1, f"{context}: group {g} {dtype} {what} live in {len(storages)} buffers"


@pytest.mark.parametrize("machine", [SGDParity], ids=["sgd"])
def test_matches_torch_every_step(machine, cpu_path):
    run_state_machine_as_test(machine)
