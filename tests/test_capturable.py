"""``capturable=True``: a step that reads no device value on the host, so that a CUDA
graph can capture it, with torch's numerics.

On the CPU (every run): a ``TorchDispatchMode`` counts, inside ``optimizer.step()``
only, the ops that read a tensor's value on the host (``.item()``, ``float()`` and
``bool()`` of a tensor all call ``aten._local_scalar_dense``; ``nonzero``,
``equal`` and copies from a device to the CPU wait for the device too). After one
warm-up step it must see none, for every optimizer of the table, with tensor
hyperparameters, a warmup + cosine schedule on a tensor lr, GradScaler with
injected inf (its skipped steps taken back on the device) and a parameter that
never has a gradient; and every step matches torch's non-capturable optimizer.
The Triton kernels run here (interpreted on CPU, compiled on CUDA): that is the
path a capture records. The CPU path without the interpreter reads its step counts
in host memory, as it updates CPU tensors only, so it is checked for parity alone.

State interchange: capturable and non-capturable state_dicts of tritonopt and
torch (torch's capturable Adam keeps ``step`` on the parameter's device) load into
each other, and training continues as torch's.

On a GPU (skipped without CUDA): ``step()`` captured in a CUDA graph and replayed
50 times under a warmup + cosine schedule and GradScaler's scale with injected
inf matches eager steps at every step; ``torch.cuda.set_sync_debug_mode("error")``
around capturable steps with a real GradScaler raises nothing; and
``torch.compile(mode="reduce-overhead")`` of a training step matches eager.
"""

import copy
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import tritonopt
from conftest import DEVICE
from optimizers import params as optimizer_params
from tritonopt.testing import assert_optimizers_match

aten = torch.ops.aten
HOST_READS = {aten._local_scalar_dense, aten.item, aten.is_nonzero, aten.nonzero, aten.equal}
SHAPES = ((10, 5), (10,), (1025,), (3,))  # the last parameter never has a gradient
STEPS = 8
BAD_STEPS = {3: float("inf"), 6: float("nan")}
WARMUP = 3


class HostReads(TorchDispatchMode):
    """Records every op that reads a tensor's value on the host, or copies one from a
    device to the CPU, while it is active."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket in HOST_READS or _to_host(func, args, kwargs):
            self.reads.append(str(func))
        return func(*args, **kwargs)


def _to_host(func, args, kwargs) -> bool:
    if func.overloadpacket is aten._to_copy:
        target = kwargs.get("device")
        return target is not None and torch.device(target).type == "cpu" and args[0].device.type != "cpu"
    if func.overloadpacket is aten.copy_:
        return args[0].device.type == "cpu" and args[1].device.type != "cpu"
    return False


def watch_steps(optimizer) -> list[list[str]]:
    """A list that gets, for every later ``optimizer.step()``, the host reads made inside it."""
    per_step: list[list[str]] = []
    mode: list[HostReads] = []

    def enter(*_):
        mode.append(HostReads())
        mode[-1].__enter__()

    def leave(*_):
        mode[-1].__exit__(None, None, None)
        per_step.append(mode.pop().reads)

    optimizer.register_step_pre_hook(enter)
    optimizer.register_step_post_hook(leave)
    return per_step


def warmup_cosine(step: int, warmup: int = WARMUP, total: int = 60) -> float:
    """The lr factor of a linear warmup followed by a cosine decay."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def _kwargs(name: str, device) -> dict:
    """Hyperparameters with tensors where torch takes them (on ``device``)."""
    tensor = lambda value: torch.tensor(value, device=device)  # noqa: E731
    if name == "SGD":
        return dict(lr=tensor(0.1), momentum=0.9, dampening=0.1, weight_decay=tensor(1e-2))
    if name == "Adam":
        return dict(lr=tensor(0.01), betas=(tensor(0.9), tensor(0.99)), weight_decay=1e-2, amsgrad=True)
    return dict(lr=tensor(0.01), weight_decay=0.1)


def _train(info, capturable, *, set_to_none, seed=0):
    """``STEPS`` steps of a torch or tritonopt optimizer with GradScaler and a schedule;
    yields ``(step, optimizer)`` after each."""
    generator = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator).to(DEVICE)) for shape in SHAPES]
    cls = info.torch_cls if capturable is None else info.cls
    extra = {} if capturable is None else {"capturable": capturable}
    optimizer = cls(params, **_kwargs(info.name, DEVICE), **extra)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
    scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**10, growth_interval=2)
    for step in range(STEPS):
        optimizer.zero_grad(set_to_none=set_to_none)
        weights = [torch.randn(shape, generator=generator).to(DEVICE) for shape in SHAPES[:-1]]
        if step in BAD_STEPS:
            weights[0][0, 0] = BAD_STEPS[step]
        loss = sum((p * w).sum() for p, w in zip(params, weights))
        scaler.scale(loss).backward()
        if step == 5 and info.name == "Adam":
            for beta, value in zip(optimizer.param_groups[0]["betas"], (0.8, 0.95)):
                beta.fill_(value)  # a momentum schedule, in place
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        yield step, optimizer


def _cpu_triton():
    if DEVICE.type == "cpu" and not tritonopt.kernels_interpreted():
        pytest.skip("kernels are compiled in this session; CPU tensors cannot run them")
    return tritonopt.cpu_implementation("triton")


@pytest.mark.parametrize("set_to_none", [False, True], ids=["grads-in-place", "new-grads"])
@pytest.mark.parametrize("info", optimizer_params())
def test_capturable_step_reads_nothing_on_the_host(info, set_to_none):
    with _cpu_triton():
        reference_run = _train(info, None, set_to_none=set_to_none)
        run = _train(info, True, set_to_none=set_to_none)
        reads = None
        for (step, reference), (_, candidate) in zip(reference_run, run):
            if reads is None:
                reads = watch_steps(candidate)  # from the second step on
            assert_optimizers_match(reference, candidate, f"step {step}")
    assert len(reads) == STEPS - 1
    assert all(not step_reads for step_reads in reads), f"host reads per step: {reads}"


@pytest.mark.parametrize("info", optimizer_params())
def test_host_reads_are_seen(info):
    """The check can fail: a non-capturable step with a tensor lr reads it on the host."""
    with _cpu_triton():
        run = _train(info, False, set_to_none=False)
        _, optimizer = next(run)
        reads = watch_steps(optimizer)
        next(run)
    assert reads and "aten._local_scalar_dense.default" in reads[0]


@pytest.mark.parametrize("info", optimizer_params())
def test_capturable_matches_torch_on_both_cpu_paths(info, cpu_path):
    for (step, reference), (_, candidate) in zip(_train(info, None, set_to_none=True), _train(info, True, set_to_none=True)):
        assert_optimizers_match(reference, candidate, f"step {step}")
    if info.name != "SGD":
        steps = {float(entry["step"]) for entry in candidate.state.values()}
        assert steps == {STEPS - len(BAD_STEPS)}, steps  # skipped steps are taken back
        assert all(entry["step"].device == DEVICE for entry in candidate.state.values())


def _grads(step, params):
    generator = torch.Generator().manual_seed(100 + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator).to(p)


def _stepped(optimizer_class, params, kwargs, steps, start=0):
    optimizer = optimizer_class(params, **kwargs)
    for step in range(start, start + steps):
        _grads(step, params)
        optimizer.step()
    return optimizer


def _params():
    generator = torch.Generator().manual_seed(7)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator).to(DEVICE)) for shape in SHAPES[:3]]


def _clone(params):
    return [torch.nn.Parameter(p.detach().clone()) for p in params]


ADAMS = optimizer_params()[1:]


@pytest.mark.parametrize("direction", ["torch->tritonopt", "tritonopt->torch"])
@pytest.mark.parametrize("source_capturable", [False, True], ids=["non-capturable", "capturable"])
@pytest.mark.parametrize("target_capturable", [False, True], ids=["into-non-capturable", "into-capturable"])
@pytest.mark.parametrize("info", ADAMS)
def test_state_dict_interchange_with_torch(info, direction, source_capturable, target_capturable, cpu_path):
    """A state_dict of torch's Adam (its capturable one keeps ``step`` on the parameter's
    device; on the CPU it loads and saves, though it cannot step there) or of tritonopt's,
    loaded into the other with the target's own ``capturable``; both then train on."""
    kwargs = dict(lr=0.01, weight_decay=1e-2, amsgrad=True)
    reference_params = _params()
    reference = _stepped(info.torch_cls, reference_params, kwargs, 3)
    checkpoint = copy.deepcopy(reference.state_dict())
    for group in checkpoint["param_groups"]:
        group["capturable"] = source_capturable  # the flag loads with the checkpoint, as torch's do
    source_class, target_class = (info.torch_cls, info.cls) if direction == "torch->tritonopt" else (info.cls, info.torch_cls)
    source = source_class(_clone(reference_params), **kwargs, capturable=source_capturable)
    source.load_state_dict(checkpoint)
    if direction == "tritonopt->torch":
        # torch's capturable Adam steps on CUDA only: the CPU target steps torch's default.
        target_capturable = target_capturable and DEVICE.type == "cuda"
    saved = source.state_dict()
    if source_capturable:
        assert all(entry["step"].device == DEVICE for entry in saved["state"].values())
    target_params = _clone(reference_params)
    target = target_class(target_params, **kwargs, capturable=target_capturable)
    target.load_state_dict(saved)
    for group in target.param_groups:
        group["capturable"] = target_capturable  # load_state_dict takes the checkpoint's flag
    for step in range(3, 6):
        _grads(step, reference_params)
        _grads(step, target_params)
        reference.step()
        target.step()
        assert_optimizers_match(reference, target, f"{direction} step {step}")


@pytest.mark.parametrize("info", optimizer_params())
def test_capturable_checkpoint_into_non_capturable_and_back(info, cpu_path):
    """tritonopt's own checkpoints move between capturable and not, as loaded (the
    checkpoint's flag, as torch does) and with the flag switched on the live optimizer
    (its state carried over, step counts moving between host and device)."""
    kwargs = dict(info.kwargs)
    reference_params = _params()
    params = _clone(reference_params)
    reference = _stepped(info.torch_cls, reference_params, kwargs, 2)
    optimizer = _stepped(info.cls, params, {**kwargs, "capturable": True}, 2)
    assert_optimizers_match(reference, optimizer, "after 2 capturable steps")
    for step, capturable in ((2, False), (3, True), (4, False)):
        restored = info.cls(params, **kwargs)
        restored.load_state_dict(optimizer.state_dict())
        assert all(bool(group.get("capturable")) != capturable for group in restored.param_groups)
        for group in restored.param_groups:
            group["capturable"] = capturable
        optimizer = restored
        for p, q in ((reference_params, reference), (params, optimizer)):
            _grads(step, p)
            q.step()
        assert_optimizers_match(reference, optimizer, f"step {step}, capturable={capturable}")
        if info.name != "SGD":
            step_device = {entry["step"].device.type for entry in optimizer.state.values()}
            assert step_device == {DEVICE.type if capturable else "cpu"}


def test_bench_captured_columns_measure_or_say_why_not():
    """``python -m tritonopt.bench --captured``'s columns on one tiny case: numbers for
    what runs here, a reason for the rest (CUDA graphs on the CPU)."""
    from tritonopt.bench import captured
    from tritonopt.bench.cases import default_cases

    case = default_cases(DEVICE.type, quick=True, tiny=True)[0]
    results = captured.measure(case, DEVICE, repeats=2)
    assert set(results) == set(captured.COLUMNS)
    assert results["tritonopt eager"]["host_us"] > 0 and results["torch fused"]["step_ms"] > 0
    if DEVICE.type == "cpu":
        assert results["tritonopt replayed"] == "n/a: CUDA graphs need CUDA"
    assert "tritonopt replayed" in captured.table(case, results)


# --- on a GPU --------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
REPLAYS = 50
REPLAY_BAD_STEPS = {7: float("inf"), 20: float("nan"), 33: float("inf")}
CUDA_SHAPES = ((64, 48), (48,), (4099,), (33, 7), (5,))  # the last never has a gradient


def _cuda_pair(info):
    """Two identical capturable optimizers (one steps eagerly, one is replayed), each with
    its own CUDA tensor lr, schedule, static gradients and GradScaler tensors."""
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(shape, generator=generator) for shape in CUDA_SHAPES]
    sides = []
    for _ in range(2):
        params = [torch.nn.Parameter(t.clone().cuda()) for t in start]
        for p in params[:-1]:
            p.grad = torch.zeros_like(p)
        kwargs = _kwargs(info.name, "cuda")
        optimizer = info.cls(params, **kwargs, capturable=True)
        optimizer.grad_scale = torch.full((1,), 2.0**10, device="cuda")
        optimizer.found_inf = torch.zeros(1, device="cuda")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, 5, REPLAYS + WARMUP))
        sides.append((params, optimizer, scheduler))
    return sides


def _set_grads(step, params, optimizer):
    """This step's scaled gradients copied into the static ones, and its inf flag."""
    generator = torch.Generator().manual_seed(1000 + step)
    for p in params[:-1]:
        grad = torch.randn(p.shape, generator=generator) * 2.0**10
        if step in REPLAY_BAD_STEPS and p is params[0]:
            grad[0, 0] = REPLAY_BAD_STEPS[step]
        p.grad.copy_(grad)
    optimizer.found_inf.fill_(1.0 if step in REPLAY_BAD_STEPS else 0.0)


def _assert_same_state(eager, replayed, context):
    for p, q in zip(eager.param_groups[0]["params"], replayed.param_groups[0]["params"]):
        torch.testing.assert_close(q, p, msg=lambda m: f"{context}: parameter\n{m}")
        for key, value in eager.state[p].items():
            torch.testing.assert_close(replayed.state[q][key], value, msg=lambda m, k=key: f"{context}: {k}\n{m}")


@needs_cuda
@pytest.mark.parametrize("info", optimizer_params())
def test_replayed_step_matches_eager_steps(info):
    (eager_params, eager, eager_schedule), (params, optimizer, schedule) = _cuda_pair(info)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up steps on a side stream, as torch's docs do
        for step in range(WARMUP):
            for side_params, side, side_schedule in ((eager_params, eager, eager_schedule), (params, optimizer, schedule)):
                _set_grads(step, side_params, side)
                side.step()
                side_schedule.step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        optimizer.step()
    for step in range(WARMUP, WARMUP + REPLAYS):
        _set_grads(step, eager_params, eager)
        _set_grads(step, params, optimizer)
        eager.step()
        graph.replay()
        eager_schedule.step()  # fill_ on each side's tensor lr: read by the next replay
        schedule.step()
        torch.cuda.synchronize()
        _assert_same_state(eager, optimizer, f"{info.name} replay {step - WARMUP}")
    counted = REPLAYS + WARMUP - len(REPLAY_BAD_STEPS)
    if info.name != "SGD":
        assert {float(entry["step"]) for entry in optimizer.state.values()} == {counted}


@needs_cuda
@pytest.mark.parametrize("info", optimizer_params())
def test_capturable_steps_never_synchronize(info):
    """A real GradScaler, a schedule and tensor hyperparameters on CUDA; only the optimizer
    step runs under ``set_sync_debug_mode("error")``, from the second step on."""
    previous = torch.cuda.get_sync_debug_mode()
    generator = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator).cuda()) for shape in CUDA_SHAPES]
    optimizer = info.cls(params, **_kwargs(info.name, "cuda"), capturable=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10, growth_interval=2)
    steps = []

    def strict(*_):
        if steps:  # from the second step on
            torch.cuda.set_sync_debug_mode("error")

    def relaxed(*_):
        torch.cuda.set_sync_debug_mode(previous)
        steps.append(1)

    optimizer.register_step_pre_hook(strict)
    optimizer.register_step_post_hook(relaxed)
    try:
        for step in range(8):
            optimizer.zero_grad(set_to_none=False)
            weights = [torch.randn(shape, generator=generator).cuda() for shape in CUDA_SHAPES[:-1]]
            if step in BAD_STEPS:
                weights[0][0, 0] = BAD_STEPS[step]
            scaler.scale(sum((p * w).sum() for p, w in zip(params, weights))).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert len(steps) == 8


@needs_cuda
@pytest.mark.parametrize("info", optimizer_params())
def test_reduce_overhead_training_step_matches_eager(info):
    torch._dynamo.reset()
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)).cuda())
    eager_model, model = models
    eager = info.cls(eager_model.parameters(), **_kwargs(info.name, "cuda"), capturable=True)
    optimizer = info.cls(model.parameters(), **_kwargs(info.name, "cuda"), capturable=True)

    @torch.compile(mode="reduce-overhead")
    def train_step(x):
        optimizer.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        optimizer.step()
        return loss

    try:
        for step in range(6):
            x = torch.randn(16, 32, generator=torch.Generator().manual_seed(step)).cuda()
            eager.zero_grad()
            eager_loss = eager_model(x).square().mean()
            eager_loss.backward()
            eager.step()
            loss = train_step(x).detach().clone()
            torch.testing.assert_close(loss, eager_loss.detach(), msg=lambda m, s=step: f"loss at step {s}\n{m}")
            for p, q in zip(eager_model.parameters(), model.parameters()):
                torch.testing.assert_close(q.detach(), p.detach(), msg=lambda m, s=step: f"step {s}\n{m}")
    finally:
        torch._dynamo.reset()
