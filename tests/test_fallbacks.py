"""What the launch cannot do runs torch's own implementation (``tritonopt/_fallback.py``):
``differentiable=True``, sparse gradients, devices other than CPU and CUDA, a parameter
listed twice, and torch's ``fused``/``foreach`` validation. Each case is compared with
torch.optim on random data, on both CPU paths.
"""

import copy
import re
import warnings

import pytest
import torch
from torch import nn

import tritonopt
from tritonopt.testing import assert_optimizers_match

NAMES = ["SGD", "Adam", "AdamW"]
KWARGS = {
    "SGD": dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "Adam": dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.01, amsgrad=True),
    "AdamW": dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
}


def _classes(name):
    return getattr(torch.optim, name), getattr(tritonopt, name)


def _outcome(action):
    """What ``action()`` does: ``("ok", None)`` or the exception's type and message."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the point is to compare whatever torch raises
        return type(error), str(error)
    return "ok", None


@pytest.fixture
def torch_steps(monkeypatch):
    """Every call of an optimizer's torch path, recorded as the number of parameters it got."""
    calls = []
    for name in ("SGD", "Adam"):
        cls = getattr(tritonopt, name)
        original = cls.torch_step

        def record(optimizer, group, params, _original=original):
            calls.append(len(params))
            return _original(optimizer, group, params)

        monkeypatch.setattr(cls, "torch_step", staticmethod(record))
    return calls


# --- sparse gradients ---------------------------------------------------------------------
class _SparseModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(12, 4, sparse=True)
        self.linear = nn.Linear(4, 3)

    def forward(self, indices, weights):
        return (self.linear(self.embedding(indices)) * weights).sum()


def _sparse_backward(models, generator):
    indices = torch.randint(0, 12, (6,), generator=generator)
    weights = torch.randn(6, 3, generator=generator)
    for model in models:
        model(indices, weights).backward()


@pytest.mark.parametrize(
    "kwargs",
    [dict(lr=0.1), dict(lr=0.1, momentum=0.9, dampening=0.2), dict(lr=0.1, momentum=0.9, nesterov=True, maximize=True)],
    ids=["plain", "momentum", "nesterov-maximize"],
)
def test_sparse_gradients_step_like_torch_sgd(cpu_path, torch_steps, kwargs):
    """The embedding's sparse gradient takes torch's path; the dense linear layer beside
    it in the same group stays on the launch."""
    torch.manual_seed(0)
    reference_model = _SparseModel()
    model = copy.deepcopy(reference_model)
    reference = torch.optim.SGD(reference_model.parameters(), **kwargs)
    optimizer = tritonopt.SGD(model.parameters(), **kwargs)
    generator = torch.Generator().manual_seed(1)
    for step in range(4):
        reference.zero_grad()
        optimizer.zero_grad()
        _sparse_backward([reference_model, model], generator)
        assert model.embedding.weight.grad.is_sparse
        reference.step()
        optimizer.step()
        assert_optimizers_match(reference, optimizer, f"step {step}")
    assert torch_steps == [1] * 4, "only the sparse parameter leaves the launch"
    if "momentum" in kwargs:
        buffer = optimizer.state[model.linear.weight]["momentum_buffer"]
        assert buffer.untyped_storage().data_ptr() == optimizer.state[model.linear.bias]["momentum_buffer"].untyped_storage().data_ptr()


def test_sparse_sgd_state_dict_interchanges_with_torch(cpu_path):
    torch.manual_seed(2)
    source_model = _SparseModel()
    source = tritonopt.SGD(source_model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(3)
    for _ in range(2):
        source.zero_grad()
        _sparse_backward([source_model], generator)
        source.step()
    target_model = copy.deepcopy(source_model)
    target = torch.optim.SGD(target_model.parameters(), lr=0.5)
    target.load_state_dict(copy.deepcopy(source.state_dict()))
    for step in range(2):
        for optimizer in (source, target):
            optimizer.zero_grad()
        _sparse_backward([target_model, source_model], generator)
        target.step()
        source.step()
        assert_optimizers_match(target, source, f"after loading into torch, step {step}")


def test_sparse_sgd_with_grad_scaler_like_torch(cpu_path):
    """GradScaler unscales the sparse gradient for torch's path and skips an inf step."""
    torch.manual_seed(6)
    reference_model = _SparseModel()
    model = copy.deepcopy(reference_model)
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    optimizer = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scalers = [torch.amp.GradScaler("cpu", init_scale=1024.0) for _ in range(2)]
    generator = torch.Generator().manual_seed(7)
    for step in range(4):
        indices = torch.randint(0, 12, (6,), generator=generator)
        weights = torch.randn(6, 3, generator=generator)
        if step == 2:
            weights[0, 0] = float("inf")
        for m, opt, scaler in ((reference_model, reference, scalers[0]), (model, optimizer, scalers[1])):
            opt.zero_grad()
            scaler.scale(m(indices, weights)).backward()
            scaler.step(opt)
            scaler.update()
        assert_optimizers_match(reference, optimizer, f"step {step}")
        assert scalers[1].get_scale() == scalers[0].get_scale()
    assert scalers[1].get_scale() == 512.0, "the inf step was seen"


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_sparse_gradients_raise_torchs_adam_error(cpu_path, name):
    """torch's message; a group before the failing one has taken its step, as in torch."""
    results = []
    for cls in _classes(name):
        torch.manual_seed(4)
        embedding = nn.Embedding(10, 3, sparse=True)
        dense = nn.Parameter(torch.randn(5))
        optimizer = cls([{"params": [dense]}, {"params": embedding.parameters()}], lr=0.1)
        embedding(torch.tensor([1, 2, 7])).sum().backward()
        dense.grad = torch.randn(5, generator=torch.Generator().manual_seed(5))
        before = embedding.weight.detach().clone()
        with pytest.raises(RuntimeError, match="^Adam does not support sparse gradients, please consider SparseAdam instead$"):
            optimizer.step()
        assert torch.equal(embedding.weight.detach(), before)
        results.append(dense.detach().clone())
    torch.testing.assert_close(results[1], results[0])


# --- devices other than CPU and CUDA ------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_meta_parameters_step_like_torch(cpu_path, name, torch_steps):
    """A meta parameter in a group with CPU ones: torch's for-loop for it, the launch for the
    others; the same state keys, shapes, dtypes and devices as torch's."""
    generator = torch.Generator().manual_seed(6)
    values = [torch.randn(4, 3, generator=generator), torch.randn(5, generator=generator)]
    optimizers = []
    for cls in _classes(name):
        params = [nn.Parameter(v.clone()) for v in values] + [nn.Parameter(torch.empty(7, 2, device="meta"))]
        optimizers.append((cls(params, **KWARGS[name]), params))
    for step in range(3):
        grads = [torch.randn(v.shape, generator=generator) for v in values]
        for optimizer, params in optimizers:
            for p, grad in zip(params, grads):
                p.grad = grad.clone()
            params[2].grad = torch.empty(7, 2, device="meta")
            optimizer.step()
        (reference, ref_params), (candidate, cand_params) = optimizers
        for i, (p, q) in enumerate(zip(ref_params[:2], cand_params[:2])):
            torch.testing.assert_close(q.detach(), p.detach(), msg=lambda m, i=i: f"step {step} parameter {i}: {m}")
        ref_state, cand_state = reference.state[ref_params[2]], candidate.state[cand_params[2]]
        assert set(cand_state) == set(ref_state)
        for key, value in ref_state.items():
            ours = cand_state[key]
            assert (ours.shape, ours.dtype, ours.device) == (value.shape, value.dtype, value.device), key
            if ours.device.type != "meta":
                torch.testing.assert_close(ours, value)
    assert torch_steps == [1] * 3


# --- a parameter listed twice ---------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_a_parameter_listed_twice_warns_and_steps_like_torch(cpu_path, name):
    generator = torch.Generator().manual_seed(7)
    values = [torch.randn(6, generator=generator), torch.randn(2, 3, generator=generator)]
    optimizers = []
    for cls in _classes(name):
        a, b = (nn.Parameter(v.clone()) for v in values)
        with pytest.warns(UserWarning, match="optimizer contains a parameter group with duplicate parameters"):
            optimizer = cls([{"params": [a, b, a]}, {"params": [nn.Parameter(values[1].clone())], "lr": 0.01}], **KWARGS[name])
        optimizers.append(optimizer)
    for step in range(3):
        grads = [torch.randn(v.shape, generator=generator) for v in values + [values[1]]]
        for optimizer in optimizers:
            params = optimizer.param_groups[0]["params"][:2] + optimizer.param_groups[1]["params"]
            for p, grad in zip(params, grads):
                p.grad = grad.clone()
            optimizer.step()
        assert_optimizers_match(*optimizers, f"step {step}")


# --- differentiable=True --------------------------------------------------------------------
TWO_STEP_KWARGS = {
    "SGD": dict(lr=0.1, weight_decay=0.1, maximize=True),
    "Adam": dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
    "AdamW": dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
}


def _random_state(name, value, generator, amsgrad):
    """A state to start from, as torch's own differentiable tests do (its momentum and
    amsgrad buffers cannot be created inside the graph and stepped again)."""
    if name == "SGD":
        return {"momentum_buffer": torch.randn(value.shape, generator=generator).requires_grad_()}
    state = {"step": torch.tensor(3.0)}
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")[: 3 if amsgrad else 2]:
        state[key] = torch.rand(value.shape, generator=generator).add_(0.5).requires_grad_()
    return state


def _hypergradients(cls, kwargs, values, grads, states):
    """d(loss after ``len(grads)`` steps)/d(lr, initial parameters, first gradients, state), through the updates."""
    lr = torch.tensor(kwargs["lr"], requires_grad=True)
    start = [v.clone().requires_grad_() for v in values]
    first_grads = [g.clone().requires_grad_() for g in grads[0]]
    params = [s.clone() for s in start]  # non-leaf: autograd records the updates on them
    optimizer = cls(params, **{**kwargs, "lr": lr, "differentiable": True})
    inputs = [lr, *start, *first_grads]
    for p, state in zip(params, states):
        optimizer.state[p].update({key: value.clone() for key, value in state.items()})
        inputs += [value for value in state.values() if value.requires_grad]
    for step_grads in [first_grads, *grads[1:]]:
        for p, grad in zip(params, step_grads):
            p.grad = grad
        optimizer.step()
    loss = sum((p * torch.linspace(-1, 1, p.numel()).view(p.shape)).sum() for p in params)
    return torch.autograd.grad(loss, inputs), [p.detach() for p in params]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("steps", [1, 2], ids=["one-step-from-state", "two-steps"])
def test_differentiable_updates_give_torchs_hypergradients(cpu_path, name, steps):
    generator = torch.Generator().manual_seed(8)
    values = [torch.randn(3, 4, generator=generator), torch.randn(5, generator=generator)]
    grads = [[torch.randn(v.shape, generator=generator) for v in values] for _ in range(steps)]
    if steps == 1:
        kwargs, states = KWARGS[name], [
            _random_state(name, v, generator, KWARGS[name].get("amsgrad")) for v in values
        ]
    else:
        kwargs, states = TWO_STEP_KWARGS[name], [{} for _ in values]
    (ref_grads, ref_params), (cand_grads, cand_params) = (
        _hypergradients(cls, kwargs, values, grads, states) for cls in _classes(name)
    )
    torch.testing.assert_close(cand_params, ref_params)
    torch.testing.assert_close(cand_grads, ref_grads)
    assert all(g.abs().sum() > 0 for g in cand_grads), "every hypergradient is informative"


@pytest.mark.parametrize("name", NAMES)
def test_a_differentiable_group_beside_an_ordinary_one(cpu_path, name, torch_steps):
    """Only the differentiable group leaves the launch, and switching it off brings its
    state (kept by torch's path) back to the launch."""
    generator = torch.Generator().manual_seed(9)
    values = [torch.randn(4, generator=generator), torch.randn(3, 2, generator=generator)]
    optimizers = []
    for cls in _classes(name):
        a, b = (nn.Parameter(v.clone()) for v in values)
        optimizers.append(cls([{"params": [a]}, {"params": [b], "differentiable": True}], **KWARGS[name]))
    for step in range(4):
        if step == 2:
            for optimizer in optimizers:
                optimizer.param_groups[1]["differentiable"] = False
        grads = [torch.randn(v.shape, generator=generator) for v in values]
        for optimizer in optimizers:
            for group, grad in zip(optimizer.param_groups, grads):
                group["params"][0].grad = grad.clone()
            optimizer.step()
        assert_optimizers_match(*optimizers, f"step {step}")
    assert torch_steps == [1, 1], "the differentiable group took torch's path while it was on"


# --- fused= and foreach= validation ---------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype_device", [(torch.complex64, "cpu"), (torch.float32, "meta")], ids=["complex", "meta"])
def test_fused_on_what_torchs_fused_op_cannot_take_raises_torchs_error(cpu_path, name, dtype_device):
    dtype, device = dtype_device

    def optimizer_and_params(cls):
        ok = nn.Parameter(torch.randn(3))
        bad = nn.Parameter(torch.randn(2, dtype=dtype, device=device))
        # SGD checks only the first parameter with a gradient: put the bad one first.
        optimizer = cls([bad, ok], lr=0.1, fused=True)
        bad.grad, ok.grad = torch.randn_like(bad), torch.randn(3)
        return optimizer, ok

    reference_class, candidate_class = _classes(name)
    error, message = _outcome(optimizer_and_params(reference_class)[0].step)
    assert error is RuntimeError and "`fused=True` requires" in message
    optimizer, ok = optimizer_and_params(candidate_class)
    before = ok.detach().clone()
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        optimizer.step()
    assert torch.equal(ok.detach(), before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "kwargs",
    [dict(fused=True, differentiable=True), dict(fused=True, foreach=True), dict(foreach=True, differentiable=True)],
    ids=["fused-differentiable", "fused-foreach", "foreach-differentiable"],
)
def test_fused_and_foreach_combinations_raise_what_torch_raises(cpu_path, name, kwargs):
    outcomes = []
    for cls in _classes(name):
        start = torch.randn(4, requires_grad=True)
        params = [start.clone()] if kwargs.get("differentiable") else [nn.Parameter(torch.randn(4))]

        def build_and_step(cls=cls, params=params):
            optimizer = cls(params, lr=0.1, **kwargs)
            params[0].grad = torch.randn(4)
            optimizer.step()

        outcomes.append(_outcome(build_and_step))
    assert outcomes[1] == outcomes[0]


def test_fast_path_is_untouched_for_dense_cpu_groups(cpu_path, torch_steps, record_updates):
    launches = record_updates(tritonopt.SGD, lambda params, kwargs: len(params))
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    optimizer = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            optimizer.step()
    assert torch_steps == [] and launches == [4, 4]
