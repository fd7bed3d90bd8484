"""GradScaler integration: tritonopt's optimizers follow torch's fused optimizers.

``_step_supports_amp_scaling`` makes GradScaler hand ``grad_scale`` and
``found_inf`` to ``step``; the update divides the gradients by the scale inside
its pass (leaving them unscaled in ``.grad``, as torch's fused ops do) and changes
nothing when ``found_inf`` is set. Trajectories, including steps with injected
inf/NaN gradients and scale backoff, are compared with torch's ``fused=True``
optimizers driven by their own GradScaler.
"""

import pytest
import torch

import tritonopt

CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=1e-2)),
    ("Adam", dict(lr=0.01, amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=0.01, betas=(0.8, 0.99))),
]
BAD_STEPS = {2: float("inf"), 5: float("nan")}


def _model(dtype, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(7, 9), torch.nn.Tanh(), torch.nn.Linear(9, 3)).to(dtype)


def _pair(name, kwargs, dtype):
    ours, theirs = _model(dtype), _model(dtype)
    candidate = getattr(tritonopt, name)(ours.parameters(), **kwargs)
    reference = getattr(torch.optim, name)(theirs.parameters(), fused=True, **kwargs)
    return ours, theirs, candidate, reference


def _scaler():
    # A short growth interval makes the scale both grow and back off within the run.
    return torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=3)


def _assert_same(ours, theirs, candidate, reference, step):
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, msg=lambda m: f"param after step {step}: {m}")
        torch.testing.assert_close(p.grad, q.grad, equal_nan=True, msg=lambda m: f"grad after step {step}: {m}")
    ours_state, theirs_state = candidate.state_dict()["state"], reference.state_dict()["state"]
    assert ours_state.keys() == theirs_state.keys()
    for index, entry in theirs_state.items():
        assert ours_state[index].keys() == entry.keys()
        for key, value in entry.items():
            torch.testing.assert_close(
                ours_state[index][key].to(value.device), value, check_dtype=key != "step",
                msg=lambda m: f"{key} of param {index} after step {step}: {m}",
            )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(k)}" for n, k in CASES])
def test_grad_scaler_trajectory_matches_torch_fused(cpu_path, name, kwargs, dtype):
    ours, theirs, candidate, reference = _pair(name, kwargs, dtype)
    scalers = _scaler(), _scaler()
    generator = torch.Generator().manual_seed(1)
    for step in range(9):
        x = torch.randn(4, 7, generator=generator, dtype=dtype)
        for model, optimizer, scaler in zip((ours, theirs), (candidate, reference), scalers):
            optimizer.zero_grad()
            scaler.scale(model(x).square().mean()).backward()
            if step in BAD_STEPS:
                model[0].weight.grad[1, 2] = BAD_STEPS[step]
            scaler.step(optimizer)
            scaler.update()
        assert scalers[0].get_scale() == scalers[1].get_scale()
        _assert_same(ours, theirs, candidate, reference, step)


@pytest.mark.parametrize("name,kwargs", CASES[1:4], ids=["SGD", "SGD-nesterov", "Adam"])
def test_unscale_then_clip_then_step_matches_torch_fused(cpu_path, name, kwargs):
    """After an explicit ``unscale_`` GradScaler passes only ``found_inf``."""
    ours, theirs, candidate, reference = _pair(name, kwargs, torch.float32)
    scalers = _scaler(), _scaler()
    generator = torch.Generator().manual_seed(2)
    for step in range(6):
        x = torch.randn(4, 7, generator=generator)
        for model, optimizer, scaler in zip((ours, theirs), (candidate, reference), scalers):
            optimizer.zero_grad()
            scaler.scale(model(x).square().mean()).backward()
            if step == 3:
                model[2].bias.grad[0] = float("inf")
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            scaler.step(optimizer)
            scaler.update()
        _assert_same(ours, theirs, candidate, reference, step)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_skipped_step_changes_nothing_and_does_not_count(cpu_path, name):
    """An inf gradient at a parameter's very first step: nothing moves, no step is counted,
    and the next finite step matches torch's for-loop optimizer, which GradScaler skips."""
    kwargs = dict(lr=0.05, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    ours, theirs = _model(torch.float32), _model(torch.float32)
    candidate = getattr(tritonopt, name)(ours.parameters(), **kwargs)
    reference = getattr(torch.optim, name)(theirs.parameters(), **kwargs)
    scalers = _scaler(), _scaler()
    generator = torch.Generator().manual_seed(3)
    for step in range(3):
        x = torch.randn(4, 7, generator=generator)
        for model, optimizer, scaler in zip((ours, theirs), (candidate, reference), scalers):
            optimizer.zero_grad()
            scaler.scale(model(x).square().mean()).backward()
            if step == 0:
                model[0].weight.grad[0, 0] = float("inf")
            before = [p.detach().clone() for p in model.parameters()]
            scaler.step(optimizer)
            scaler.update()
            if step == 0:
                assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
        for p, q in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(p, q)
    if name == "Adam":
        assert all(float(candidate.state[p]["step"]) == 2 for p in ours.parameters())


def _implementations(module_name):
    from tritonopt import _torch_path
    from tritonopt.kernels import adam, sgd

    kernels = {"sgd": sgd.sgd_update, "adam": adam.adam_update}
    impls = [pytest.param(getattr(_torch_path, f"{module_name}_update"), id="torch-path")]
    if tritonopt.kernels_interpreted():
        impls.insert(0, pytest.param(kernels[module_name], id="triton"))
    return impls


def _update_arguments(kind):
    from tritonopt.kernels.adam import AdamHyperparameters
    from tritonopt.kernels.sgd import SGDHyperparameters

    if kind == "sgd":
        return dict(rows=[0, 0], hyperparameters=[SGDHyperparameters(0.1, 0.01, 0.9, 0.0, False)], nesterov=False, maximize=False)
    row = AdamHyperparameters(lr=0.01, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.01, step=3)
    return dict(rows=[0, 0], hyperparameters=[row], decoupled_weight_decay=True, amsgrad=False, maximize=False)


def _update_case(kind, sizes=(2053, 100)):
    """Two tensors' param, grad and state lists (and None for Adam's unused max_exp_avg_sqs)."""
    generator = torch.Generator().manual_seed(4)
    columns = [[torch.randn(n, generator=generator) for n in sizes] for _ in range(4)]
    param, grad, first, second = columns
    state = [first] if kind == "sgd" else [first, [t.abs() for t in second], None]
    return param, grad, state


def _clone(tensors):
    return None if tensors is None else [t.clone() for t in tensors]


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("found", [0.0, 1.0])
def test_update_unscales_in_its_pass_and_skips_on_inf(kind, found):
    for update in (p.values[0] for p in _implementations(kind)):
        scale = torch.tensor([1024.0])
        param, grad, state = _update_case(kind)
        expected_param, expected_grad = _clone(param), _clone(grad)
        expected_state = [_clone(s) for s in state]
        if not found:
            expected_grad = [g / 1024 for g in expected_grad]
            update(expected_param, expected_grad, *expected_state, **_update_arguments(kind))
        update(param, grad, *state, **_update_arguments(kind), grad_scale=scale, found_inf=torch.tensor([found]))
        torch.testing.assert_close(param, expected_param, rtol=0, atol=0)
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
        for value, expected in zip(state, expected_state):
            torch.testing.assert_close(value, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name,kwargs", [CASES[1], CASES[3]], ids=["SGD", "Adam"])
def test_grad_scaler_hands_its_scale_to_the_update(name, kwargs, monkeypatch, record_updates):
    """No separate unscale pass: GradScaler's scale and inf flag reach the update itself."""
    optimizer_class = getattr(tritonopt, name)
    received = record_updates(optimizer_class, lambda params, kw: (kw["grad_scale"], kw["found_inf"]))
    model = _model(torch.float32)
    optimizer = optimizer_class(model.parameters(), **kwargs)
    scaler = _scaler()
    unscale_calls = []
    original_unscale = scaler._unscale_grads_
    monkeypatch.setattr(scaler, "_unscale_grads_", lambda *a: (unscale_calls.append(a[1]), original_unscale(*a))[1])
    scaler.scale(model(torch.randn(4, 7)).square().mean()).backward()
    scaler.step(optimizer)
    assert received and all(float(s) == 2.0**12 and float(f) == 0.0 for s, f in received)
    assert all(float(inv_scale) == 1.0 for inv_scale in unscale_calls), "only the inf check, no unscale"
