"""The flat-buffer engine and the SGD contract: layout, launches, errors, staleness."""

import copy
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import tritonopt
from optimizers import error_params
from tritonopt.kernels import sgd as sgd_kernels
from tritonopt.testing import assert_optimizers_match


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    ).to(dtype)


def _backward(model, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=generator, dtype=next(model.parameters()).dtype)
    model(x).square().sum().backward()


@pytest.fixture
def launches(record_updates):
    """Every update launch (Triton kernel or torch path), recorded as (tensors, each row's first_step)."""
    return record_updates(
        tritonopt.SGD, lambda params, kwargs: (len(params), [row.first_step for row in kwargs["hyperparameters"]])
    )


# --- construction errors: the same exception and message as torch -----------------
@pytest.mark.parametrize(("info", "case"), error_params())
def test_bad_hyperparameters_raise_like_torch(info, case):
    """Every optimizer's constructor error cases (from the table): torch and tritonopt
    raise the same exception with the same message."""
    for optimizer in (info.torch_cls, info.cls):
        with pytest.raises(case.error, match=case.regex):
            optimizer([torch.nn.Parameter(torch.randn(3))], **case.kwargs)


PARAM_ERROR_CASES = [
    (lambda p: p, TypeError, "iterable of Tensors or dicts"),
    (lambda p: [], ValueError, "empty parameter list"),
    (lambda p: [{"params": {p}}], TypeError, "ordered collections"),
    (lambda p: [p * 2], ValueError, "can't optimize a non-leaf Tensor"),
    (lambda p: [{"params": [p]}, {"params": [p]}], ValueError, "more than one parameter group"),
    (lambda p: [1.0], TypeError, "optimizer can only optimize Tensors"),
]


@pytest.mark.parametrize("make_params,error,message", PARAM_ERROR_CASES, ids=[m for _, _, m in PARAM_ERROR_CASES])
def test_bad_params_raise_like_torch(make_params, error, message):
    for optimizer in (torch.optim.SGD, tritonopt.SGD):
        with pytest.raises(error, match=message):
            optimizer(make_params(torch.nn.Parameter(torch.randn(3))), lr=0.1)


def test_what_tritonopt_rejects_beyond_torch_is_rejected_clearly():
    p = torch.nn.Parameter(torch.randn(3))
    with pytest.raises(TypeError, match="only floating-point and complex"):
        tritonopt.SGD([torch.arange(3)], lr=0.1)
    optimizer = tritonopt.SGD([p], lr=0.1)
    before = p.detach().clone()
    with pytest.raises(TypeError, match="only floating-point and complex"):
        optimizer.add_param_group({"params": [torch.nn.Parameter(torch.randn(2)), torch.arange(2)]})
    assert len(optimizer.param_groups) == 1, "a rejected group must not be half-added"
    assert torch.equal(p.detach(), before)


def test_complex_parameters_match_torch(cpu_path):
    generator = torch.Generator().manual_seed(1)
    values = torch.randn(4, 3, generator=generator, dtype=torch.complex64)
    candidate, reference = torch.nn.Parameter(values.clone()), torch.nn.Parameter(values.clone())
    kwargs = dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True, maximize=True)
    cand_opt, ref_opt = tritonopt.SGD([candidate], **kwargs), torch.optim.SGD([reference], **kwargs)
    for step in range(4):
        grad = torch.randn(4, 3, generator=generator, dtype=torch.complex64)
        candidate.grad, reference.grad = grad.clone(), grad.clone()
        cand_opt.step()
        ref_opt.step()
        assert_optimizers_match(ref_opt, cand_opt, f"step {step}")


# --- where tensors live ---------------------------------------------------------------
def test_parameters_and_gradients_stay_where_they_are_and_state_keeps_their_layout(cpu_path):
    conv = torch.nn.Parameter(torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last))
    transposed = torch.nn.Parameter(torch.randn(6, 7).t())
    scalar = torch.nn.Parameter(torch.tensor(2.0))
    empty = torch.nn.Parameter(torch.randn(0, 3))
    other_dtype = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    params = [conv, transposed, scalar, empty, other_dtype]
    twins = [torch.nn.Parameter(p.detach().clone(memory_format=torch.preserve_format)) for p in params]
    addresses = [p.data_ptr() for p in params]
    strides = [p.stride() for p in params]
    optimizer = tritonopt.SGD(params, lr=0.1, momentum=0.9)
    reference = torch.optim.SGD(twins, lr=0.1, momentum=0.9)
    for step in range(2):
        for p, q in zip(params, twins):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone(memory_format=torch.preserve_format)
        grads = [(p.grad, p.grad.data_ptr()) for p in params]
        optimizer.step()
        reference.step()
        assert_optimizers_match(reference, optimizer, f"step {step}")
        assert [p.data_ptr() for p in params] == addresses and [p.stride() for p in params] == strides
        assert all(p.grad is grad and p.grad.data_ptr() == address for p, (grad, address) in zip(params, grads))
    assert conv.is_contiguous(memory_format=torch.channels_last)
    buffers = [optimizer.state[p]["momentum_buffer"] for p in params]
    assert all(b.shape == p.shape and b.stride() == p.stride() for b, p in zip(buffers, params))
    assert len({b.untyped_storage().data_ptr() for b in buffers[:4]}) == 1, "one state buffer per (group, dtype)"


def test_a_gradient_set_in_another_layout_is_read_in_its_parameters(cpu_path):
    ours = torch.nn.Parameter(torch.randn(6, 7).t())
    theirs = torch.nn.Parameter(ours.detach().clone())
    optimizer = tritonopt.SGD([ours], lr=0.1, momentum=0.9)
    reference = torch.optim.SGD([theirs], lr=0.1, momentum=0.9)
    ours.grad = torch.randn(7, 6)  # contiguous, unlike the transposed parameter
    theirs.grad = ours.grad.clone()
    for step in range(3):
        if step:  # as autograd accumulates into an existing .grad: the same tensor, new values
            more = torch.randn(7, 6)
            ours.grad.add_(more)
            theirs.grad.add_(more)
        optimizer.step()
        reference.step()
        assert_optimizers_match(reference, optimizer, f"step {step}")


def test_a_gradient_read_through_a_copy_is_copied_again_after_accumulating_in_place(cpu_path):
    """Autograd accumulates into the same ``.grad`` object: a (1, 2) parameter with
    strides (1, 1) gets contiguous gradients, read through a copy that must not be reused."""
    start = torch.randn(2, 1, generator=torch.Generator().manual_seed(5)).t()
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    assert ours.stride() == (1, 1)
    optimizer = tritonopt.SGD([ours], lr=0.5, momentum=0.9)
    reference = torch.optim.SGD([theirs], lr=0.5, momentum=0.9)
    generator = torch.Generator().manual_seed(6)
    for step in range(3):
        x = torch.randn(1, 2, generator=generator)
        for p, opt in ((ours, optimizer), (theirs, reference)):
            (p * x).sum().backward()  # accumulated: no zero_grad between steps
            opt.step()
        assert_optimizers_match(reference, optimizer, f"step {step}")


# --- launches -------------------------------------------------------------------------
def test_one_launch_per_device_dtype_and_switches_for_every_group(cpu_path, launches):
    """Groups that differ only in values (lr, momentum, weight decay on or off) share a launch;
    a group with other code-path switches or another dtype launches apart."""
    model = _model()
    head = torch.nn.Linear(5, 2).double()
    extra = [torch.nn.Parameter(torch.randn(3)) for _ in range(100)]
    groups = [{"params": model.parameters()}, {"params": head.parameters(), "lr": 0.01}]
    groups += [{"params": [p], "lr": 0.1 * 0.99**i, "weight_decay": 0.01 * (i % 2)} for i, p in enumerate(extra)]
    groups.append({"params": [torch.nn.Parameter(torch.randn(3))], "nesterov": True})
    optimizer = tritonopt.SGD(groups, lr=0.1, momentum=0.9)
    for step in range(3):
        for p in (p for group in optimizer.param_groups for p in group["params"]):
            p.grad = torch.randn_like(p)
        launches.clear()
        optimizer.step()
        assert sorted(count for count, _ in launches) == [1, 2, 4 + 100], f"step {step}: {launches}"
        assert all(first == [step == 0] * len(first) for _, first in launches)


def test_none_grads_are_skipped_and_late_parameters_start_their_own_momentum(cpu_path, launches):
    generator = torch.Generator().manual_seed(3)
    values = [torch.randn(5, generator=generator) for _ in range(3)]
    kwargs = dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1)
    candidate = [torch.nn.Parameter(v.clone()) for v in values]
    reference = [torch.nn.Parameter(v.clone()) for v in values]
    cand_opt, ref_opt = tritonopt.SGD(candidate, **kwargs), torch.optim.SGD(reference, **kwargs)
    for step, with_grad in enumerate([[0], [0, 1, 2], [1, 2], [0, 1, 2]]):
        for i in with_grad:
            grad = torch.randn(5, generator=generator)
            candidate[i].grad, reference[i].grad = grad.clone(), grad.clone()
        launches.clear()
        cand_opt.step()
        ref_opt.step()
        assert_optimizers_match(ref_opt, cand_opt, f"step {step}")
        assert len(launches) == 1, "fresh and running parameters share one launch"
        for p in candidate + reference:
            p.grad = None
    untouched = torch.nn.Parameter(torch.randn(3))
    optimizer = tritonopt.SGD([untouched], lr=0.1, weight_decay=0.5, momentum=0.9)
    before = untouched.detach().clone()
    optimizer.step()
    assert torch.equal(untouched.detach(), before) and untouched not in optimizer.state


def test_launch_arguments_do_not_change_when_hyperparameter_values_do(cpu_path, monkeypatch):
    """No recompilation: new lr/momentum/weight_decay values only change the hyperparameter table."""
    specialisations = []
    kernel = sgd_kernels._sgd_kernel

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                specialisations.append(
                    (tuple(sorted(kwargs.items())), tuple((type(a).__name__, getattr(a, "dtype", None)) for a in args))
                )
                return kernel[grid](*args, **kwargs)

            return launch

    monkeypatch.setattr(sgd_kernels, "_sgd_kernel", Recorder())
    model = _model()
    optimizer = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step, lr in enumerate([0.1, 0.1, 0.05, 0.0123, 1e-8, 3.0]):
        optimizer.param_groups[0]["lr"] = lr
        optimizer.param_groups[0]["momentum"] = 0.5 + step / 20
        optimizer.param_groups[0]["weight_decay"] = 1e-4 * (step % 2)
        optimizer.zero_grad(set_to_none=False)
        _backward(model, step)
        optimizer.step()
    if cpu_path == "torch":
        assert specialisations == []
        return
    assert len(specialisations) == 6
    assert len(set(specialisations)) == 1, "changing hyperparameter values must not change the specialisation"
    assert all(type_name == "Tensor" for type_name, _ in specialisations[0][1]), "tables and GradScaler pointers only"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_no_recompilation_on_gpu():
    model = _model().cuda()
    optimizer = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 8, 8, device="cuda")
    for step in range(6):
        if step == 2:
            compiled = sum(len(cache) for cache, *_ in sgd_kernels._sgd_kernel.device_caches.values())
        optimizer.param_groups[0]["lr"] *= 0.5
        optimizer.zero_grad(set_to_none=False)
        model(x).square().sum().backward()
        optimizer.step()
    assert sum(len(cache) for cache, *_ in sgd_kernels._sgd_kernel.device_caches.values()) == compiled


# --- following storage others move -------------------------------------------------------
def test_moved_storage_is_followed_not_taken_back(cpu_path):
    model = _model()
    reference_model = copy.deepcopy(model)
    cand_opt = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ref_opt = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        if step == 2:
            weight = model[0].weight
            weight.data = weight.data.clone()  # as ZeRO's bucket views do
            moved = weight.data_ptr()
        for m, opt in ((model, cand_opt), (reference_model, ref_opt)):
            opt.zero_grad()
            _backward(m, step)
            opt.step()
        assert_optimizers_match(ref_opt, cand_opt, f"step {step}")
        if step >= 2:
            assert model[0].weight.data_ptr() == moved, "the moved parameter was taken back"



def test_model_dtype_change_reflattens_with_state(cpu_path):
    model = _model()
    cand_opt = tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _backward(model, 0)
    cand_opt.step()
    saved = copy.deepcopy(cand_opt.state_dict())
    model.double()
    reference_model = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    ref_opt.load_state_dict(saved)  # torch casts the momentum buffers to float64
    for step in range(1, 3):
        for m, opt in ((model, cand_opt), (reference_model, ref_opt)):
            opt.zero_grad()
            _backward(m, step)
            opt.step()
        assert_optimizers_match(ref_opt, cand_opt, f"step {step} after model.double()")
    assert all(b["momentum_buffer"].dtype == torch.float64 for b in cand_opt.state.values())


# --- repr and packaging ---------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{}, dict(lr=0.5, momentum=0.9, nesterov=True, maximize=True), dict(lr=torch.tensor(0.01), weight_decay=1e-4)])
def test_repr_is_torchs(kwargs):
    model = _model()
    groups = [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.001}]
    assert repr(tritonopt.SGD(groups, **kwargs)) == repr(torch.optim.SGD(
        [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.001}], **kwargs))


def test_import_needs_no_environment_and_kernels_live_inside_the_package(tmp_path):
    """Outside the source tree, with no TRITON_INTERPRET: CPU steps use the torch path."""
    script = textwrap.dedent(
        """
        import importlib.util, os, torch, tritonopt
        from tritonopt import _backend
        assert "TRITON_INTERPRET" not in os.environ
        assert not _backend.KERNELS_INTERPRETED and not _backend.uses_triton(torch.device("cpu"))
        assert importlib.util.find_spec("kernels") is None, "no top-level kernels module"
        p = torch.nn.Parameter(torch.ones(3)); p.grad = torch.ones(3)
        tritonopt.SGD([p], lr=0.5).step()
        assert torch.equal(p.detach(), torch.full((3,), 0.5))
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_parameters_gaining_gradients_one_by_one_match_torch(cpu_path):
    """Runs that start at the first parameter and grow step by step: each step's
    launches must cover exactly the parameters that have gradients now."""
    generator = torch.Generator().manual_seed(7)
    initial = [torch.randn(5, generator=generator) for _ in range(4)]
    for name, kwargs in (("SGD", dict(lr=0.1, momentum=0.9, dampening=0.2)), ("Adam", dict(lr=0.05))):
        ours = [torch.nn.Parameter(t.clone()) for t in initial]
        theirs = [torch.nn.Parameter(t.clone()) for t in initial]
        candidate = getattr(tritonopt, name)(ours, **kwargs)
        reference = getattr(torch.optim, name)(theirs, **kwargs)
        for step in range(5):
            for i, (p, q) in enumerate(zip(ours, theirs)):
                grad = torch.randn(5, generator=generator) if i <= step else None
                p.grad, q.grad = grad, None if grad is None else grad.clone()
            candidate.step()
            reference.step()
            assert_optimizers_match(reference, candidate, f"{name} step {step}")


def test_a_parameter_removed_from_its_group_is_no_longer_updated(cpu_path):
    params = [torch.nn.Parameter(torch.randn(3)) for _ in range(3)]
    optimizer = tritonopt.SGD(params, lr=0.1, momentum=0.9)
    for p in params:
        p.grad = torch.randn(3)
    optimizer.step()
    removed = optimizer.param_groups[0]["params"].pop()
    before = removed.detach().clone()
    optimizer.step()
    assert torch.equal(removed.detach(), before)


@pytest.mark.parametrize("new_shape", [(2, 3), (4, 3)])
def test_a_gradient_of_another_shape_raises_instead_of_broadcasting(cpu_path, new_shape):
    p = torch.nn.Parameter(torch.randn(3))
    optimizer = tritonopt.SGD([p], lr=0.1)
    p.grad = torch.randn(3)
    optimizer.step()
    p.data = torch.randn(new_shape)  # the old (3,) gradient would broadcast over the new shape
    for attempt in range(2):  # a gradient that raised is checked again, not remembered as checked
        with pytest.raises(RuntimeError, match=rf"gradient of shape \(3,\).*parameter of shape {re.escape(str(new_shape))}"):
            optimizer.step()


def test_a_transposed_parameter_data_is_noticed(cpu_path):
    """Same storage, other strides: the bucket is rebuilt, its state carried over."""
    start = torch.randn(4, 3).t()  # shape (3, 4), column-major strides
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    optimizer = tritonopt.SGD([ours], lr=0.1, momentum=0.9)
    reference = torch.optim.SGD([theirs], lr=0.1, momentum=0.9)
    for step in range(3):
        if step == 1:
            ours.data, theirs.data = ours.data.t(), theirs.data.t()
            ours.grad = theirs.grad = None
            for optimizer_ in (optimizer, reference):
                p = optimizer_.param_groups[0]["params"][0]
                optimizer_.state[p]["momentum_buffer"] = optimizer_.state[p]["momentum_buffer"].t()
        grad = torch.randn(theirs.shape, generator=torch.Generator().manual_seed(step))
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        optimizer.step()
        reference.step()
        torch.testing.assert_close(ours.detach(), theirs.detach())


def test_state_replaced_by_hand_is_used_while_other_parameters_have_no_grad(cpu_path):
    params = [torch.nn.Parameter(torch.randn(4)) for _ in range(2)]
    twins = [torch.nn.Parameter(p.detach().clone()) for p in params]
    optimizer = tritonopt.SGD(params, lr=0.1, momentum=0.9)
    reference = torch.optim.SGD(twins, lr=0.1, momentum=0.9)
    for p, q in zip(params, twins):
        p.grad, q.grad = torch.ones(4), torch.ones(4)
    optimizer.step()
    reference.step()
    buffer = torch.randn(4)
    optimizer.state[params[0]]["momentum_buffer"] = buffer.clone()
    reference.state[twins[0]]["momentum_buffer"] = buffer.clone()
    params[1].grad = twins[1].grad = None
    optimizer.step()
    reference.step()
    assert_optimizers_match(reference, optimizer, "after replacing a momentum buffer by hand")


def test_a_deep_copied_optimizer_steps_like_torchs(cpu_path):
    """``copy.deepcopy`` (and pickling) keep only torch's state: the copy rebuilds its buckets."""
    model = _model()
    reference_model = copy.deepcopy(model)
    optimizer = copy.deepcopy(tritonopt.SGD(model.parameters(), lr=0.1, momentum=0.9))
    # The copy refers to copies of the parameters; train those.
    params = optimizer.param_groups[0]["params"]
    reference = torch.optim.SGD(reference_model.parameters(), lr=0.1, momentum=0.9)
    for step in range(3):
        generator = torch.Generator().manual_seed(step)
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        for p, q, grad in zip(params, reference_model.parameters(), grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        optimizer.step()
        reference.step()
        for p, q in zip(params, reference_model.parameters()):
            torch.testing.assert_close(p.detach(), q.detach())


def test_loaded_state_moves_into_the_state_buffers_at_load(cpu_path):
    """Loaded state tensors become views of the state buffers at ``load_state_dict``, so the
    loaded copies are not kept alive beside them."""
    model = _model()
    optimizer = tritonopt.Adam(model.parameters(), lr=1e-2)
    _backward(model, 0)
    optimizer.step()
    saved = optimizer.state_dict()
    saved["state"] = {i: {k: v.clone() for k, v in entry.items()} for i, entry in saved["state"].items()}
    optimizer.load_state_dict(saved)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        storages = {optimizer.state[p][key].untyped_storage().data_ptr() for p in model.parameters()}
        assert len(storages) == 1, f"{key}: loaded tensors were kept instead of the state buffer"


@pytest.mark.parametrize("remaining_bytes", [0, 8])
def test_a_storage_that_shrinks_under_a_parameter_raises_and_nothing_is_updated(cpu_path, remaining_bytes):
    shrinking, other = torch.nn.Parameter(torch.randn(6)), torch.nn.Parameter(torch.randn(4))
    optimizer = tritonopt.SGD([other, shrinking], lr=0.1, momentum=0.9)
    for p in (shrinking, other):
        p.grad = torch.randn_like(p)
    optimizer.step()
    before = other.detach().clone(), optimizer.state[other]["momentum_buffer"].clone()
    shrinking.untyped_storage().resize_(remaining_bytes)
    with pytest.raises(RuntimeError, match=r"parameter 1 of shape \(6,\) addresses 24 bytes .* storage shrank"):
        optimizer.step()
    assert torch.equal(other.detach(), before[0])
    assert torch.equal(optimizer.state[other]["momentum_buffer"], before[1])
