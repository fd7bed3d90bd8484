"""tritonopt's optimizers in torch.optim's ecosystem: schedulers, state_dict interchange,
hooks, closures, named parameters, GradScaler and zero_grad.

Every test runs for every optimizer in the table (``optimizers.py``): it builds one
small model (Conv2d + Linear layers, random non-zero weights from a seeded
generator), deep-copies it, and drives the torch optimizer over one copy and
tritonopt's over the other through the same operations, with two parameter groups
and the table's representative hyperparameters (every state buffer in use). After
every step parameters, state and hyperparameters must match
(``tritonopt.testing.assert_optimizers_match``). Each test runs on the
Triton-interpreter path and on the torch path (``cpu_path``).
"""

import copy
import io
import math

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler
from torch.optim import optimizer as torch_optimizer

import optimizers
from conftest import DEVICE
from optimizers import OPTIMIZERS
from tritonopt.testing import assert_optimizers_match

GROUP1 = {"lr": 0.02, "weight_decay": 1e-3}
STEPS = 12


def make_model(seed: int = 0) -> nn.Sequential:
    """Conv2d(2->3, 3x3) on 6x6 inputs, then Linear(48->8), Tanh, Linear(8->4)."""
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(48, 8), nn.Tanh(), nn.Linear(8, 4))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model.to(DEVICE)


def groups(model: nn.Sequential) -> list[dict]:
    """Group 0: the Conv2d and the first Linear (defaults); group 1: the last Linear."""
    return [
        {"params": [*model[0].parameters(), *model[2].parameters()]},
        {"params": list(model[4].parameters()), **GROUP1},
    ]


EVERY_OPTIMIZER = pytest.mark.parametrize("info", optimizers.params())


def make_pair(info, seed: int = 0, **overrides):
    """(reference model, torch optimizer, candidate model, tritonopt optimizer) on identical copies."""
    ref_model = make_model(seed)
    cand_model = copy.deepcopy(ref_model)
    hparams = {**info.kwargs, **overrides}
    reference = info.torch_cls(groups(ref_model), **hparams)
    candidate = info.cls(groups(cand_model), **hparams)
    return ref_model, reference, cand_model, candidate


def batch(generator: torch.Generator):
    """A random input batch and random loss weights (never zeros)."""
    x = torch.randn(4, 2, 6, 6, generator=generator).to(DEVICE)
    w = torch.randn(4, 4, generator=generator).to(DEVICE)
    return x, w


def loss_of(model, x, w):
    return (model(x) * w).sum()


def backward(models, generator):
    """Backward of the same random loss through every model; returns the losses."""
    x, w = batch(generator)
    losses = [loss_of(m, x, w) for m in models]
    for loss in losses:
        loss.backward()
    return losses


def train_step(pairs, generator):
    """zero_grad, backward on a random loss, step, for each (model, optimizer)."""
    for _, opt in pairs:
        opt.zero_grad()
    backward([m for m, _ in pairs], generator)
    for _, opt in pairs:
        opt.step()


def roundtrip(state_dict):
    """A state_dict through real serialization."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def copy_params(src_model, dst_model):
    with torch.no_grad():
        for src, dst in zip(src_model.parameters(), dst_model.parameters(), strict=True):
            dst.copy_(src)


def assert_state_dicts_match(reference: dict, candidate: dict, context: str) -> None:
    assert candidate.keys() == reference.keys(), context
    assert repr(candidate["param_groups"]) == repr(reference["param_groups"]), f"{context}: param_groups differ"
    assert candidate["state"].keys() == reference["state"].keys(), f"{context}: state indices differ"
    for index, ref_entry in reference["state"].items():
        cand_entry = candidate["state"][index]
        assert cand_entry.keys() == ref_entry.keys(), f"{context}: state {index} keys differ"
        for key, value in ref_entry.items():
            torch.testing.assert_close(cand_entry[key], value, msg=lambda m, k=key, i=index: f"{context}: state {i} {k!r}\n{m}")


# --- 1. learning-rate schedulers ---------------------------------------------------

def _chained(opt):
    return lr_scheduler.ChainedScheduler(
        [lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=3), lr_scheduler.ExponentialLR(opt, gamma=0.9)]
    )


def _sequential(opt):
    return lr_scheduler.SequentialLR(
        opt,
        schedulers=[
            lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=4),
            lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
        ],
        milestones=[5],
    )


SCHEDULERS = {
    "LambdaLR": lambda opt: lr_scheduler.LambdaLR(opt, [lambda e: 0.9**e, lambda e: 1.0 / (1 + e)]),
    "MultiplicativeLR": lambda opt: lr_scheduler.MultiplicativeLR(opt, lambda e: 0.95),
    "StepLR": lambda opt: lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
    "MultiStepLR": lambda opt: lr_scheduler.MultiStepLR(opt, milestones=[2, 5, 9], gamma=0.3),
    "ConstantLR": lambda opt: lr_scheduler.ConstantLR(opt, factor=0.25, total_iters=5),
    "LinearLR": lambda opt: lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=8),
    "ExponentialLR": lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.8),
    "PolynomialLR": lambda opt: lr_scheduler.PolynomialLR(opt, total_iters=10, power=2.0),
    "CosineAnnealingLR": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=6, eta_min=1e-4),
    "ChainedScheduler": _chained,
    "SequentialLR": _sequential,
    "ReduceLROnPlateau": lambda opt: lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1),
    "CyclicLR": lambda opt: lr_scheduler.CyclicLR(
        opt, base_lr=0.002, max_lr=0.02, step_size_up=3, cycle_momentum=True, base_momentum=0.8, max_momentum=0.9
    ),
    "OneCycleLR": lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=[0.02, 0.03], total_steps=STEPS + 2, cycle_momentum=True),
    "CosineAnnealingWarmRestarts": lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=4, T_mult=2, eta_min=1e-4),
}

# A metric that improves, then plateaus, so ReduceLROnPlateau reduces the learning rate.
PLATEAU_METRICS = [5.0, 4.0, 4.0, 4.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0]


# Every scheduler with SGD; with the others the schedulers that also cycle momentum
# (betas[0] there) and LambdaLR, which changes only lr (the rest change only lr too,
# and the interpreter is slow).
ALSO_WITH_EVERY_OPTIMIZER = ("LambdaLR", "CyclicLR", "OneCycleLR")


@pytest.mark.parametrize(
    ("info", "name"),
    [
        pytest.param(info, name, id=f"{info.name.lower()}-{name}")
        for info in OPTIMIZERS
        for name in SCHEDULERS
        if info is optimizers.SGD or name in ALSO_WITH_EVERY_OPTIMIZER
    ],
)
def test_lr_scheduler(cpu_path, info, name):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=1)
    ref_sched = SCHEDULERS[name](reference)
    cand_sched = SCHEDULERS[name](candidate)
    assert cand_sched.get_last_lr() == ref_sched.get_last_lr()
    assert_optimizers_match(reference, candidate, f"{name}, after construction")
    generator = torch.Generator().manual_seed(11)
    lrs, momenta = set(), set()
    for step in range(STEPS):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        for sched in (ref_sched, cand_sched):
            if name == "ReduceLROnPlateau":
                sched.step(PLATEAU_METRICS[step])
            else:
                sched.step()
        context = f"{name}, step {step}"
        assert_optimizers_match(reference, candidate, context)
        assert cand_sched.get_last_lr() == ref_sched.get_last_lr(), context
        lrs.add(tuple(cand_sched.get_last_lr()))
        momenta.update(group["momentum"] if "momentum" in group else group["betas"][0] for group in candidate.param_groups)
    # The schedule really moved (otherwise the test would prove little).
    assert len(lrs) > 1, name
    if name in ("CyclicLR", "OneCycleLR"):
        assert len(momenta) > 1, f"{name} did not cycle the momentum"


# --- 2. state_dict interchange -------------------------------------------------------

@EVERY_OPTIMIZER
@pytest.mark.parametrize("direction", ["tritonopt->torch", "torch->tritonopt"])
def test_state_dict_interchange(cpu_path, info, direction):
    """Train one kind 3 steps, save through torch.save, load into a fresh optimizer of
    the other kind built with other hyperparameters, then train both in lockstep."""
    to_torch = direction == "tritonopt->torch"
    source_cls, target_cls = (info.cls, info.torch_cls) if to_torch else (info.torch_cls, info.cls)
    source_model = make_model(seed=2)
    source = source_cls(groups(source_model), **info.kwargs)
    generator = torch.Generator().manual_seed(21)
    for _ in range(3):
        train_step([(source_model, source)], generator)
    saved = roundtrip(source.state_dict())

    target_model = make_model(seed=99)  # different values, overwritten below
    copy_params(source_model, target_model)
    target = target_cls(groups(target_model), **info.other_kwargs)  # hyperparameters come from the load
    target.load_state_dict(saved)
    (ref_model, reference), (cand_model, candidate) = (
        ((target_model, target), (source_model, source)) if to_torch else ((source_model, source), (target_model, target))
    )
    assert_optimizers_match(reference, candidate, f"{direction}: after load")
    assert_state_dicts_match(reference.state_dict(), candidate.state_dict(), f"{direction}: after load")
    for step in range(3):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        assert_optimizers_match(reference, candidate, f"{direction}: continued step {step}")


@EVERY_OPTIMIZER
def test_state_dict_matches_torch_during_training(cpu_path, info):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=4)
    assert_state_dicts_match(reference.state_dict(), candidate.state_dict(), "before any step")
    generator = torch.Generator().manual_seed(41)
    for step in range(3):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        assert_state_dicts_match(
            roundtrip(reference.state_dict()), roundtrip(candidate.state_dict()), f"step {step}"
        )


@EVERY_OPTIMIZER
@pytest.mark.parametrize("mismatch", ["group count", "group size"])
def test_load_state_dict_with_wrong_groups_raises_like_torch(cpu_path, info, mismatch):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=5)
    generator = torch.Generator().manual_seed(51)
    train_step([(ref_model, reference), (cand_model, candidate)], generator)
    errors = []
    for opt in (reference, candidate):
        saved = roundtrip(opt.state_dict())
        if mismatch == "group count":
            saved["param_groups"] = saved["param_groups"][:1]
        else:
            saved["param_groups"][1]["params"] = saved["param_groups"][1]["params"][:1]
        with pytest.raises(ValueError) as info:
            opt.load_state_dict(saved)
        errors.append(str(info.value))
    assert errors[1] == errors[0]
    # Nothing changed: both still step in lockstep.
    train_step([(ref_model, reference), (cand_model, candidate)], generator)
    assert_optimizers_match(reference, candidate, f"step after the rejected load ({mismatch})")


@EVERY_OPTIMIZER
def test_load_state_dict_with_wrong_state_shape_keeps_state(cpu_path, info):
    """A state tensor of the wrong shape (the first state key: SGD's momentum buffer,
    Adam's exp_avg) is rejected before anything changes: state tensors, their values
    and every hyperparameter stay as they were."""
    ref_model, reference, cand_model, candidate = make_pair(info, seed=6)
    generator = torch.Generator().manual_seed(61)
    for _ in range(2):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
    key = info.state_keys[0]
    params = [p for group in candidate.param_groups for p in group["params"]]
    before = {p: {k: v.clone() for k, v in candidate.state[p].items()} for p in params}
    tensors = {p: dict(candidate.state[p]) for p in params}
    hparams_before = repr([{k: v for k, v in g.items() if k != "params"} for g in candidate.param_groups])

    bad = roundtrip(candidate.state_dict())
    bad["param_groups"][0]["lr"] = 0.5
    bad["param_groups"][1].update(info.other_kwargs)
    bad["param_groups"][1]["weight_decay"] = 0.3
    good_shape = bad["state"][3][key].shape  # the first Linear's bias (8,)
    bad["state"][0][key] = torch.randn(5, 7, generator=generator).to(DEVICE)
    bad["state"][1][key] = torch.randn(good_shape, generator=generator).to(DEVICE)
    with pytest.raises(ValueError, match=key):
        candidate.load_state_dict(bad)

    for p in params:
        assert candidate.state[p].keys() == before[p].keys()
        for k, value in candidate.state[p].items():
            assert value is tensors[p][k], k
            torch.testing.assert_close(value, before[p][k], rtol=0, atol=0)
    assert repr([{k: v for k, v in g.items() if k != "params"} for g in candidate.param_groups]) == hparams_before
    assert_optimizers_match(reference, candidate, "after the rejected load")
    for step in range(2):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        assert_optimizers_match(reference, candidate, f"step {step} after the rejected load")


# --- 3. hooks ------------------------------------------------------------------------

def _hook_script(model, opt, generator_seed):
    """The same hook registrations and operations, for either optimizer; returns the call log."""
    calls = []
    generator = torch.Generator().manual_seed(generator_seed)
    x, w = batch(generator)

    def closure():
        calls.append(("closure", torch.is_grad_enabled()))
        opt.zero_grad()
        loss = loss_of(model, x, w)
        loss.backward()
        return loss

    def pre(o, args, kwargs):
        calls.append(("pre", o is opt, len(args), sorted(kwargs)))

    def pre_second(o, args, kwargs):
        calls.append(("pre_second", o is opt))

    def post(o, args, kwargs):
        calls.append(("post", o is opt, len(args), sorted(kwargs)))

    def global_pre(o, args, kwargs):
        calls.append(("global_pre", o is opt))

    def global_post(o, args, kwargs):
        calls.append(("global_post", o is opt))

    def inject_closure(o, args, kwargs):
        calls.append(("inject", len(args), sorted(kwargs)))
        return args, {**kwargs, "closure": closure}

    handles = [opt.register_step_pre_hook(pre), opt.register_step_post_hook(post)]
    global_handles = [
        torch_optimizer.register_optimizer_step_pre_hook(global_pre),
        torch_optimizer.register_optimizer_step_post_hook(global_post),
    ]
    results = []
    try:
        # Plain steps: global hooks, then the optimizer's, once per step.
        for _ in range(2):
            opt.zero_grad()
            loss_of(model, x, w).backward()
            results.append(opt.step())
            calls.append(("stepped",))
        # A pre hook that supplies the closure through modified args.
        inject = opt.register_step_pre_hook(inject_closure)
        second = opt.register_step_pre_hook(pre_second)
        results.append(opt.step())
        calls.append(("stepped with injected closure",))
        inject.remove()
        second.remove()
        # Removed hooks are not called any more.
        for handle in global_handles:
            handle.remove()
        handles[0].remove()
        opt.zero_grad()
        loss_of(model, x, w).backward()
        results.append(opt.step())
        calls.append(("stepped after remove",))
    finally:
        for handle in global_handles + handles:
            handle.remove()

    # state_dict and load_state_dict hooks.
    def sd_pre(o):
        calls.append(("sd_pre", o is opt))

    def sd_post(o, sd):
        calls.append(("sd_post", o is opt, sorted(sd), len(sd["state"])))
        sd["extra"] = "from post hook"
        return sd

    def load_pre(o, sd):
        calls.append(("load_pre", o is opt, sd.get("extra")))
        sd = dict(sd)
        sd.pop("extra", None)
        sd["param_groups"] = [dict(g, lr=0.125) for g in sd["param_groups"]]
        return sd

    def load_post(o):
        calls.append(("load_post", o is opt, [g["lr"] for g in o.param_groups]))

    def sd_pre_first(o):
        calls.append(("sd_pre_first", o is opt))

    def load_post_first(o):
        calls.append(("load_post_first", o is opt))

    sd_handles = [
        opt.register_state_dict_pre_hook(sd_pre),
        opt.register_state_dict_pre_hook(sd_pre_first, prepend=True),
        opt.register_load_state_dict_post_hook(load_post_first, prepend=True),
        opt.register_state_dict_post_hook(sd_post),
        opt.register_load_state_dict_pre_hook(load_pre),
        opt.register_load_state_dict_post_hook(load_post),
    ]
    state_dict = opt.state_dict()
    calls.append(("state_dict keys", sorted(state_dict)))
    opt.load_state_dict(roundtrip(state_dict))
    for handle in sd_handles:
        handle.remove()
    state_dict = opt.state_dict()
    calls.append(("state_dict keys after remove", sorted(state_dict)))
    opt.load_state_dict(state_dict)
    calls.append(("lrs", [g["lr"] for g in opt.param_groups]))
    return calls, results


@EVERY_OPTIMIZER
def test_hooks_called_like_torch(cpu_path, info):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=7)
    ref_calls, ref_results = _hook_script(ref_model, reference, 71)
    cand_calls, cand_results = _hook_script(cand_model, candidate, 71)
    assert cand_calls == ref_calls
    # The injected closure's loss is returned; the plain steps return None.
    assert [r is None for r in cand_results] == [r is None for r in ref_results] == [True, True, False, True]
    torch.testing.assert_close(cand_results[2], ref_results[2])
    assert_optimizers_match(reference, candidate, "after the hook script")
    # Sanity: the script exercised what it claims.
    names = [c[0] for c in ref_calls]
    for expected in ("global_pre", "global_post", "pre", "post", "inject", "pre_second", "closure",
                     "sd_pre", "sd_pre_first", "sd_post", "load_pre", "load_post", "load_post_first"):
        assert expected in names, expected
    assert ("closure", True) in ref_calls
    assert ("lrs", [0.125, 0.125]) in ref_calls


# --- 4. closures ---------------------------------------------------------------------

@EVERY_OPTIMIZER
@pytest.mark.parametrize("outer_no_grad", [False, True])
def test_closure_steps(cpu_path, info, outer_no_grad):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=8)
    generator = torch.Generator().manual_seed(81)
    for step in range(4):
        x, w = batch(generator)
        losses = {}
        grad_enabled = {}

        def make_closure(key, model, opt):
            def closure():
                grad_enabled[key] = torch.is_grad_enabled()
                opt.zero_grad()
                loss = loss_of(model, x, w)
                loss.backward()
                losses[key] = loss
                return loss
            return closure

        with torch.set_grad_enabled(not outer_no_grad):
            ref_out = reference.step(make_closure("ref", ref_model, reference))
            cand_out = candidate.step(make_closure("cand", cand_model, candidate))
        assert grad_enabled == {"ref": True, "cand": True}
        assert ref_out is losses["ref"]
        assert cand_out is losses["cand"]
        torch.testing.assert_close(cand_out, ref_out)
        assert_optimizers_match(reference, candidate, f"closure step {step}")


# --- 5. named parameters ------------------------------------------------------------

@EVERY_OPTIMIZER
@pytest.mark.parametrize("how", ["model.named_parameters()", "groups of named params"])
def test_named_parameters(cpu_path, info, how):
    ref_model = make_model(seed=9)
    cand_model = copy.deepcopy(ref_model)

    def build(cls, model):
        if how == "model.named_parameters()":
            return cls(model.named_parameters(), **info.kwargs)
        return cls(
            [
                {"params": [*model[0].named_parameters(prefix="conv"), *model[2].named_parameters(prefix="fc1")]},
                {"params": list(model[4].named_parameters(prefix="fc2")), **GROUP1},
            ],
            **info.kwargs,
        )

    reference = build(info.torch_cls, ref_model)
    candidate = build(info.cls, cand_model)
    names = [g["param_names"] for g in reference.param_groups]
    assert all(names) and [g["param_names"] for g in candidate.param_groups] == names
    assert_state_dicts_match(reference.state_dict(), candidate.state_dict(), "before any step")
    generator = torch.Generator().manual_seed(91)
    for step in range(3):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        assert_optimizers_match(reference, candidate, f"step {step}")
        assert_state_dicts_match(
            roundtrip(reference.state_dict()), roundtrip(candidate.state_dict()), f"state_dict at step {step}"
        )
    # Named state_dicts load across implementations too.
    candidate.load_state_dict(roundtrip(reference.state_dict()))
    assert_optimizers_match(reference, candidate, "after loading torch's named state_dict")


# --- 6. GradScaler -------------------------------------------------------------------

@EVERY_OPTIMIZER
def test_grad_scaler(cpu_path, info):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=10)
    scalers = [torch.amp.GradScaler(DEVICE.type, init_scale=2.0**12, growth_interval=2) for _ in range(2)]
    pairs = [(ref_model, reference, scalers[0]), (cand_model, candidate, scalers[1])]
    generator = torch.Generator().manual_seed(101)
    inf_step = 3
    skipped = 0
    for step in range(6):
        x, w = batch(generator)
        before = [[p.detach().clone() for p in m.parameters()] for m, _, _ in pairs]
        for model, opt, scaler in pairs:
            opt.zero_grad()
            scaler.scale(loss_of(model, x, w)).backward()
            if step == inf_step:
                model[2].weight.grad[1, 3] = math.inf
        for model, opt, scaler in pairs:
            scaler.step(opt)
            scaler.update()
        context = f"GradScaler step {step}"
        assert scalers[1].get_scale() == scalers[0].get_scale(), context
        if step == inf_step:
            for (model, _, _), old in zip(pairs, before):
                for p, q in zip(model.parameters(), old):
                    torch.testing.assert_close(p.detach(), q, rtol=0, atol=0, msg=f"{context}: step not skipped")
            skipped += 1
        assert_optimizers_match(reference, candidate, context)
    assert skipped == 1
    assert scalers[0].get_scale() != 2.0**12  # backed off and grew again


# --- 7. zero_grad --------------------------------------------------------------------

@EVERY_OPTIMIZER
def test_zero_grad_set_to_none(cpu_path, info):
    ref_model, reference, cand_model, candidate = make_pair(info, seed=11)
    generator = torch.Generator().manual_seed(111)
    for step in range(2):
        train_step([(ref_model, reference), (cand_model, candidate)], generator)
        for opt in (reference, candidate):
            opt.zero_grad(set_to_none=True)
            assert all(p.grad is None for g in opt.param_groups for p in g["params"])
        assert_optimizers_match(reference, candidate, f"step {step}")


@EVERY_OPTIMIZER
def test_zero_grad_keep_grads(cpu_path, info):
    ref_model = make_model(seed=12)
    ref_unused = nn.Parameter(torch.randn(3, 2, generator=torch.Generator().manual_seed(12)).to(DEVICE))
    cand_model = copy.deepcopy(ref_model)
    cand_unused = nn.Parameter(ref_unused.detach().clone())

    def build(cls, model, unused):
        param_groups = groups(model)
        param_groups[1]["params"].append(unused)  # never gets a gradient
        return cls(param_groups, **info.kwargs)

    reference = build(info.torch_cls, ref_model, ref_unused)
    candidate = build(info.cls, cand_model, cand_unused)
    pairs = [(ref_model, reference), (cand_model, candidate)]
    generator = torch.Generator().manual_seed(121)

    def zero_and_step(step):
        for _, opt in pairs:
            opt.zero_grad(set_to_none=False)
        backward([ref_model, cand_model], generator)
        for _, opt in pairs:
            opt.step()
        assert_optimizers_match(reference, candidate, f"step {step}")

    zero_and_step(0)
    grads = [[p.grad for p in g["params"]] for g in candidate.param_groups]
    # The gradients stay where autograd put them: one storage each, at the same address.
    addresses = [[None if grad is None else grad.data_ptr() for grad in group] for group in grads]
    present = [grad for group in grads for grad in group if grad is not None]
    assert len({grad.untyped_storage().data_ptr() for grad in present}) == len(present)

    for step in range(1, 4):
        for _, opt in pairs:
            opt.zero_grad(set_to_none=False)
        for ref_p, cand_p in zip(
            (p for g in reference.param_groups for p in g["params"]),
            (p for g in candidate.param_groups for p in g["params"]),
            strict=True,
        ):
            assert (cand_p.grad is None) == (ref_p.grad is None)
            if ref_p.grad is not None:
                assert not cand_p.grad.any() and not ref_p.grad.any(), f"step {step}: grad not zeroed"
        assert ref_unused.grad is None and cand_unused.grad is None
        backward([ref_model, cand_model], generator)
        for _, opt in pairs:
            opt.step()
        assert_optimizers_match(reference, candidate, f"step {step}")
        now = [[p.grad for p in g["params"]] for g in candidate.param_groups]
        for g, (old, new) in enumerate(zip(grads, now)):
            for i, (a, b) in enumerate(zip(old, new, strict=True)):
                assert a is b, f"step {step}: group {g} parameter {i} got a new .grad tensor"
                assert b is None or b.data_ptr() == addresses[g][i], f"step {step}: .grad moved"
        for ref_p, cand_p in zip(ref_model.parameters(), cand_model.parameters()):
            torch.testing.assert_close(cand_p.grad, ref_p.grad)
    assert cand_unused.grad is None
