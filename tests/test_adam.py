"""tritonopt.Adam and AdamW against torch.optim.Adam and AdamW where Adam differs
from SGD: repr, per-parameter step counts, the amsgrad switch, state_dict
interchange with torch's fused Adam and gradient-less parameters, tensor betas,
hyperparameter changes and launches. What every optimizer shares (schedulers,
hooks, closures, state_dict, GradScaler, zero_grad, constructor errors) is tested
for every entry of the optimizer table (``test_compat.py``, ``test_engine.py``).
Random parameters and gradients throughout; every step is compared
(``assert_optimizers_match``) on both CPU paths.
"""

import copy
import io

import pytest
import torch
from torch import nn

import tritonopt
from conftest import DEVICE
from tritonopt.testing import assert_optimizers_match

NAMES = ["Adam", "AdamW"]


def _model(seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=generator, dtype=dtype))
    return model.to(DEVICE)


def _finetuning_groups(model, weight_decay=0.1):
    """The usual split: no weight decay on biases and norms."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _pair(name, seed=0, groups=_finetuning_groups, **hparams):
    ref_model = _model(seed)
    cand_model = copy.deepcopy(ref_model)
    reference = getattr(torch.optim, name)(groups(ref_model), **hparams)
    candidate = getattr(tritonopt, name)(groups(cand_model), **hparams)
    return ref_model, reference, cand_model, candidate


def _backward(models, generator, skip=()):
    x = torch.randn(5, 6, generator=generator).to(DEVICE)
    w = torch.randn(5, 3, generator=generator).to(DEVICE)
    for model in models:
        (model(x) * w).sum().backward()
        for index, p in enumerate(model.parameters()):
            if index in skip:
                p.grad = None


def _train(pairs, generator, steps, skip=(), context=""):
    for step in range(steps):
        for _, optimizer in pairs:
            optimizer.zero_grad()
        _backward([m for m, _ in pairs], generator, skip)
        for _, optimizer in pairs:
            optimizer.step()
        assert_optimizers_match(pairs[0][1], pairs[1][1], f"{context} step {step}")


def _roundtrip(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_repr_and_defaults_are_torchs(name):
    _, reference, _, candidate = _pair(name, lr=3e-4, betas=(0.8, 0.95), amsgrad=True, foreach=False)
    assert repr(candidate) == repr(reference)
    assert candidate.defaults == reference.defaults


@pytest.mark.parametrize("name", NAMES)
def test_each_parameter_counts_its_own_steps(cpu_path, name):
    """A parameter without a gradient for two steps, and a group added after four,
    start at step 1 when they first update, and a step without a gradient is not
    counted, as in torch."""
    ref_model, reference, cand_model, candidate = _pair(name, seed=2, lr=1e-2, amsgrad=True)
    late_ref, late_cand = nn.Parameter(torch.randn(4, 3)), None
    late_cand = nn.Parameter(late_ref.detach().clone())
    generator = torch.Generator().manual_seed(21)
    pairs = [(ref_model, reference), (cand_model, candidate)]
    _train(pairs, generator, 2, skip={1, 2}, context="bias and norm weight without grads:")
    _train(pairs, generator, 1, context="all grads:")
    _train(pairs, generator, 1, skip={3}, context="norm bias, which has state, without a grad:")
    reference.add_param_group({"params": [late_ref], "lr": 0.05})
    candidate.add_param_group({"params": [late_cand], "lr": 0.05})
    for step in range(3):
        for model, optimizer, late in ((ref_model, reference, late_ref), (cand_model, candidate, late_cand)):
            optimizer.zero_grad()
            late.grad = torch.full_like(late, 0.1 * (step + 1)) + torch.linspace(-1, 1, 12).view(4, 3)
        _backward([ref_model, cand_model], generator)
        reference.step()
        candidate.step()
        assert_optimizers_match(reference, candidate, f"late group, step {step}")
    steps = [float(candidate.state[p]["step"]) for p in cand_model.parameters()]
    assert steps == [7.0, 5.0, 5.0, 6.0, 7.0, 7.0] and float(candidate.state[late_cand]["step"]) == 3.0


@pytest.mark.parametrize("name", NAMES)
def test_switching_amsgrad_on_raises_like_torch_and_keeps_state(cpu_path, name):
    ref_model, reference, cand_model, candidate = _pair(name, seed=3, lr=1e-2)
    generator = torch.Generator().manual_seed(31)
    _train([(ref_model, reference), (cand_model, candidate)], generator, 2)
    params_before = [p.detach().clone() for p in cand_model.parameters()]
    for optimizer in (reference, candidate):
        optimizer.param_groups[0]["amsgrad"] = True
    _backward([ref_model, cand_model], generator)
    for optimizer in (reference, candidate):
        with pytest.raises(KeyError, match="max_exp_avg_sq"):
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(params_before, cand_model.parameters()))
    assert_optimizers_match(reference, candidate, "after the failed step")
    for optimizer in (reference, candidate):
        optimizer.param_groups[0]["amsgrad"] = False
    _train([(ref_model, reference), (cand_model, candidate)], generator, 2, context="amsgrad off again:")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("direction", ["tritonopt->torch", "torch->tritonopt", "torch fused->tritonopt"])
def test_state_dict_interchange(cpu_path, name, direction):
    """Train one kind 3 steps, load its state_dict (through torch.save) into a fresh
    optimizer of the other kind, then train both in lockstep."""
    torch_kwargs = {"fused": True} if "fused" in direction else {}
    torch_class, ours_class = getattr(torch.optim, name), getattr(tritonopt, name)
    to_torch = direction == "tritonopt->torch"
    source_model = _model(seed=4)
    hparams = dict(lr=1e-2, betas=(0.85, 0.99), amsgrad=True)
    source = (ours_class if to_torch else torch_class)(_finetuning_groups(source_model), **hparams, **({} if to_torch else torch_kwargs))
    generator = torch.Generator().manual_seed(41)
    _backward([source_model], generator)
    for _ in range(3):
        source.zero_grad()
        _backward([source_model], generator, skip={1} if _ == 0 else ())
        source.step()
    saved = _roundtrip(source.state_dict())
    target_model = copy.deepcopy(source_model)
    target = (torch_class if to_torch else ours_class)(_finetuning_groups(target_model), lr=0.5)
    target.load_state_dict(saved)
    pairs = [(target_model, target), (source_model, source)] if to_torch else [(source_model, source), (target_model, target)]
    if "fused" not in direction:
        assert_optimizers_match(pairs[0][1], pairs[1][1], f"{direction}: after load")
        _train(pairs, generator, 3, context=f"{direction}:")
    else:
        # torch's fused Adam keeps float32 steps on the parameter's device; compare with
        # a torch for-loop optimizer loaded from the same state.
        plain_model = copy.deepcopy(source_model)
        plain = torch_class(_finetuning_groups(plain_model), lr=0.5)
        plain.load_state_dict(_roundtrip(source.state_dict()))
        _train([(plain_model, plain), (target_model, target)], generator, 3, context=f"{direction}:")


@pytest.mark.parametrize("name", NAMES)
def test_tensor_hyperparameters(cpu_path, name):
    hparams = dict(lr=torch.tensor(2e-2), betas=(torch.tensor(0.8), torch.tensor(0.9)))
    ref_model, reference, cand_model, candidate = _pair(name, seed=5, **hparams)
    generator = torch.Generator().manual_seed(51)
    _train([(ref_model, reference), (cand_model, candidate)], generator, 2)
    for optimizer in (reference, candidate):
        optimizer.param_groups[0]["lr"].fill_(5e-3)
    _train([(ref_model, reference), (cand_model, candidate)], generator, 2, context="after lr.fill_:")


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameter_changes_between_steps(cpu_path, name):
    ref_model, reference, cand_model, candidate = _pair(name, seed=6, lr=1e-2)
    generator = torch.Generator().manual_seed(61)
    changes = [("lr", 3e-3), ("betas", (0.5, 0.9)), ("eps", 1e-3), ("weight_decay", 0.3), ("maximize", True)]
    for key, value in changes:
        for optimizer in (reference, candidate):
            optimizer.param_groups[0][key] = value
        _train([(ref_model, reference), (cand_model, candidate)], generator, 1, context=f"{key}={value}:")


def test_one_launch_a_step_with_a_row_per_step_count(cpu_path, record_updates):
    launches = record_updates(tritonopt.Adam, lambda params, kwargs: [row.step for row in kwargs["hyperparameters"]])
    model = _model(seed=7)
    optimizer = tritonopt.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(71)
    runs = []
    for step in range(3):
        launches.clear()
        optimizer.zero_grad(set_to_none=False)
        _backward([model], generator, skip={5} if step == 0 else ())
        if step == 0:
            model[3].bias.grad = None
        optimizer.step()
        runs.append(list(launches))
    assert runs == [[[1.0]], [[2.0, 1.0]]] + [[[3.0, 2.0]]], "one launch a step, one row per step count"
