"""tritonopt under the components that own parameters and gradients across processes:
FSDP2 (``fully_shard``) and ``torch.distributed.checkpoint``, ZeRO
(``ZeroRedundancyOptimizer``) and DDP, each in two real gloo processes on CPU.

Every scenario trains one model with each tritonopt optimizer and the same model
with torch.optim's class of that name (``integration.OPTIMIZERS``), through the same
component, on random data that differs between the ranks, and compares them.

One spawn of two processes runs all cases of a scenario (importing torch costs
seconds per process); the parametrized tests read their case's outcome from it.
Each case runs in a process group of its own, created up front, and the ranks meet
in a control group after every case, so a case that raises on one rank only times
out alone (``CASE_TIMEOUT``) instead of desynchronizing the cases after it. A worker
that dies re-raises in the parent through ``torch.multiprocessing.spawn``.
"""

import json
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.optim import ZeroRedundancyOptimizer
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel

from integration import OPTIMIZER_IDS, OPTIMIZERS, batch, loss_of, make_model
from tritonopt.testing import assert_optimizers_match

WORLD_SIZE = 2
STEPS = 3
CASE_TIMEOUT = timedelta(seconds=30)


# --- harness ------------------------------------------------------------------------
def _worker(rank: int, scenario: str, directory: str) -> None:
    """Runs every case of ``scenario`` on this rank and writes ``{case: traceback or ""}``."""
    torch.manual_seed(rank)
    dist.init_process_group(
        "gloo", init_method=f"file://{directory}/store", rank=rank, world_size=WORLD_SIZE, timeout=2 * CASE_TIMEOUT
    )
    run, cases = SCENARIOS[scenario]
    control = dist.new_group(backend="gloo")
    groups = [dist.new_group(backend="gloo", timeout=CASE_TIMEOUT) for _ in cases]
    outcomes = {}
    for (name, case), group in zip(cases.items(), groups):
        try:
            run(rank, group, case, Path(directory) / name)
            outcomes[name] = ""
        except Exception:
            outcomes[name] = traceback.format_exc()
        dist.barrier(group=control)
    Path(directory, f"outcomes-{rank}.json").write_text(json.dumps(outcomes))
    dist.destroy_process_group()


def _spawn(scenario: str, directory: Path) -> dict[str, str]:
    """``{case: the tracebacks of the ranks where it failed, or ""}`` for every case of ``scenario``."""
    torch.multiprocessing.spawn(_worker, args=(scenario, str(directory)), nprocs=WORLD_SIZE, join=True)
    per_rank = [json.loads((directory / f"outcomes-{rank}.json").read_text()) for rank in range(WORLD_SIZE)]
    return {
        name: "\n".join(f"--- rank {rank} ---\n{outcomes[name]}" for rank, outcomes in enumerate(per_rank) if outcomes[name])
        for name in per_rank[0]
    }


@pytest.fixture(scope="module")
def outcome(tmp_path_factory):
    """``outcome(scenario, case)``: spawns the scenario's workers once, then fails a test with its case's tracebacks."""
    spawned = {}

    def check(scenario: str, case: str) -> None:
        if scenario not in spawned:
            try:
                spawned[scenario] = _spawn(scenario, tmp_path_factory.mktemp(scenario))
            except Exception as error:  # a worker died: every case of the scenario reports it, none respawns
                spawned[scenario] = f"a worker died:\n{error}"
        if isinstance(spawned[scenario], str):
            pytest.fail(f"{scenario}: {spawned[scenario]}", pytrace=False)
        if spawned[scenario][case]:
            pytest.fail(f"{scenario} {case} failed in the workers:\n{spawned[scenario][case]}", pytrace=False)

    return check


# --- helpers the workers share ----------------------------------------------------
def _local(tensor):
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _flat_params(model) -> torch.Tensor:
    return torch.cat([_local(p).detach().reshape(-1) for p in model.parameters()])


def _gather(tensor: torch.Tensor, group) -> list[torch.Tensor]:
    gathered = [torch.empty_like(tensor) for _ in range(WORLD_SIZE)]
    dist.all_gather(gathered, tensor, group=group)
    return gathered


def _assert_ranks_equal(gathered: list[torch.Tensor], model, context: str) -> None:
    """``gathered``: ``_gather(_flat_params(model), group)``, a collective, so gathered before any assertion."""
    for rank, params in enumerate(gathered):
        torch.testing.assert_close(params, _flat_params(model), msg=lambda m, r=rank: f"{context}: rank {r} differs\n{m}")


def _assert_local_match(ref_model, ref_opt, cand_model, cand_opt, context: str) -> None:
    """This rank's parameters and optimizer state (local shards of DTensors) are torch's."""
    for (name, ref_p), cand_p in zip(ref_model.named_parameters(), cand_model.parameters(), strict=True):
        where = f"{context}, {name}"
        assert type(cand_p) is type(ref_p), f"{where}: a {type(cand_p).__name__}, torch's is a {type(ref_p).__name__}"
        torch.testing.assert_close(_local(cand_p).detach(), _local(ref_p).detach(), msg=lambda m, w=where: f"{w}\n{m}")
        ref_state, cand_state = ref_opt.state.get(ref_p, {}), cand_opt.state.get(cand_p, {})
        assert cand_state.keys() == ref_state.keys(), f"{where}: state {sorted(cand_state)} vs torch's {sorted(ref_state)}"
        for key, value in ref_state.items():
            # DCP saves a DTensor by its shards and any other tensor as one replicated value
            assert isinstance(cand_state[key], DTensor) == isinstance(value, DTensor), (
                f"{where}: state {key!r} is a {type(cand_state[key]).__name__}, torch's a {type(value).__name__}"
            )
            torch.testing.assert_close(
                _local(cand_state[key]), _local(value), msg=lambda m, w=where, k=key: f"{w}: state {k!r}\n{m}"
            )


# --- training, and what it must leave alone -----------------------------------------
def _train(model, optimizer, rank: int, steps, *, set_to_none: bool = True):
    """zero_grad, backward, step over ``steps``.

    Returns each step's loss followed by the loss after the last step, and what the
    steps disturbed: gradients that ``step()`` replaced, moved or changed, and
    parameters (local shards) whose storage moved after the optimizer was built.
    """
    pointers = [_local(p).data_ptr() for p in model.parameters()]
    losses, disturbed = [], []
    for step in steps:
        optimizer.zero_grad(set_to_none=set_to_none)
        loss = loss_of(model, *batch(step, rank))
        loss.backward()
        grads = [(p.grad, _local(p.grad).data_ptr(), _local(p.grad).clone()) for p in model.parameters()]
        optimizer.step()
        losses.append(loss.detach())
        for (name, p), (grad, pointer, values) in zip(model.named_parameters(), grads):
            if p.grad is not grad:
                disturbed.append(f"step {step}: {name}'s .grad was replaced")
            elif _local(p.grad).data_ptr() != pointer:
                disturbed.append(f"step {step}: {name}'s .grad moved")
            elif not torch.equal(_local(p.grad), values):
                disturbed.append(f"step {step}: {name}'s .grad values changed")
    with torch.no_grad():
        losses.append(loss_of(model, *batch(-1, rank)))
    disturbed += [f"{n} moved" for (n, p), ptr in zip(model.named_parameters(), pointers) if _local(p).data_ptr() != ptr]
    return losses, disturbed


def _failures(*checks) -> list[str]:
    """The messages of the ``checks`` (callables) that fail; every check runs."""
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as error:
            failures.append(str(error))
    return failures


def _assert_all(*checks, earlier: tuple[str, ...] = ()) -> None:
    """Runs every check and fails with all their messages (and ``earlier`` failures) at once."""
    failures = [*earlier, *_failures(*checks)]
    assert not failures, f"{len(failures)} of {len(earlier) + len(checks)} checks failed:\n\n" + "\n\n".join(failures)


def _assert_undisturbed(disturbed: list[str], owner: str) -> None:
    assert not disturbed, f"step() disturbed what {owner} owns:\n" + "\n".join(disturbed)


def _assert_losses_match(ref_losses, cand_losses, context: str) -> None:
    torch.testing.assert_close(torch.stack(cand_losses), torch.stack(ref_losses), msg=lambda m: f"{context}\n{m}")


# --- FSDP2 --------------------------------------------------------------------------
def _sharded_model(mesh: DeviceMesh, seed: int = 0):
    model = make_model(seed)
    for module in (model.embed, model.hidden, model.norm, model.fc):
        fully_shard(module, mesh=mesh)
    return fully_shard(model, mesh=mesh)


def _fully_shard_case(rank: int, group, case, _directory) -> None:
    """The same ``fully_shard`` model trained by both optimizers: losses (the forward all-gathers
    from FSDP2's storage), local shards and state match. The local shards stay in the storage
    ``fully_shard`` gave them and the gradient DTensors where FSDP2 accumulates into them
    (``zero_grad(set_to_none=False)``: FSDP2 adds each reduce-scatter into ``p.grad``'s local tensor)."""
    mesh = DeviceMesh.from_group(group, "cpu")
    ref_model, cand_model = _sharded_model(mesh), _sharded_model(mesh)
    shard_pointers = [_local(p).data_ptr() for p in cand_model.parameters()]
    ref_opt = case.torch_class(ref_model.parameters(), **case.kwargs)
    cand_opt = case.tritonopt_class(cand_model.parameters(), **case.kwargs)
    ref_losses, _ = _train(ref_model, ref_opt, rank, range(STEPS), set_to_none=False)
    cand_losses, disturbed = _train(cand_model, cand_opt, rank, range(STEPS), set_to_none=False)

    moved = [n for (n, p), ptr in zip(cand_model.named_parameters(), shard_pointers) if _local(p).data_ptr() != ptr]
    _assert_all(
        lambda: _assert_losses_match(ref_losses, cand_losses, "losses"),
        lambda: _assert_local_match(ref_model, ref_opt, cand_model, cand_opt, f"after {STEPS} steps"),
        lambda: _assert_undisturbed([f"{n}'s local shard left the storage fully_shard gave it" for n in moved], "FSDP2"),
        lambda: _assert_undisturbed(disturbed, "FSDP2"),
    )


def _assert_dcp_state_dicts_match(ref_model, ref_opt, model, optimizer, context: str) -> None:
    """What DCP saves: ``get_optimizer_state_dict`` (keyed by parameter name) of both optimizers."""
    ref_state = get_optimizer_state_dict(ref_model, ref_opt)["state"]
    state = get_optimizer_state_dict(model, optimizer)["state"]
    assert state.keys() == ref_state.keys(), f"{context}: {sorted(state)} vs torch's {sorted(ref_state)}"
    for name, entry in ref_state.items():
        assert state[name].keys() == entry.keys(), f"{context}: {name} holds {sorted(state[name])}"
        for key, value in entry.items():
            torch.testing.assert_close(
                _local(state[name][key]), _local(value), msg=lambda m, n=name, k=key: f"{context}: {n} {k!r}\n{m}"
            )


def _checkpoint_case(rank: int, group, case, directory: Path) -> None:
    """Train 2 steps, ``dcp.save`` model and optimizer, load both into a fresh model and optimizer
    (``set_optimizer_state_dict``), train 2 more: equal to torch's uninterrupted 4 steps."""
    mesh = DeviceMesh.from_group(group, "cpu")
    ref_model = _sharded_model(mesh)
    ref_opt = case.torch_class(ref_model.parameters(), **case.kwargs)
    model = _sharded_model(mesh)
    optimizer = case.tritonopt_class(model.parameters(), **case.kwargs)
    _train(ref_model, ref_opt, rank, range(2))
    _, disturbed = _train(model, optimizer, rank, range(2))
    # reported at the end: a rank that stopped here would leave the other waiting in dcp.save
    at_checkpoint = _failures(
        lambda: _assert_local_match(ref_model, ref_opt, model, optimizer, "at the checkpoint"),
        lambda: _assert_dcp_state_dicts_match(ref_model, ref_opt, model, optimizer, "get_optimizer_state_dict at the checkpoint"),
    )
    saved = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, optimizer)}
    dcp.save(saved, checkpoint_id=directory, process_group=group)
    del model, optimizer, saved

    resumed = _sharded_model(mesh, seed=1)
    resumed_opt = case.tritonopt_class(resumed.parameters(), **case.kwargs)
    state = {"model": get_model_state_dict(resumed), "optim": get_optimizer_state_dict(resumed, resumed_opt)}
    dcp.load(state, checkpoint_id=directory, process_group=group)
    set_model_state_dict(resumed, state["model"])
    set_optimizer_state_dict(resumed, resumed_opt, state["optim"])
    ref_losses, _ = _train(ref_model, ref_opt, rank, range(2, 4))
    losses, disturbed_after = _train(resumed, resumed_opt, rank, range(2, 4))

    _assert_all(
        lambda: _assert_losses_match(ref_losses, losses, "losses after resuming"),
        lambda: _assert_local_match(ref_model, ref_opt, resumed, resumed_opt, "2 steps after resuming"),
        lambda: _assert_undisturbed(disturbed + disturbed_after, "FSDP2"),
        earlier=tuple(at_checkpoint),
    )


@pytest.mark.parametrize("case", OPTIMIZER_IDS)
def test_fully_shard_training_matches_torch(outcome, case):
    outcome("fully_shard", case)


@pytest.mark.parametrize("case", OPTIMIZER_IDS)
def test_distributed_checkpoint_resumes_like_an_uninterrupted_run(outcome, case):
    outcome("checkpoint", case)


# --- ZeRO and DDP -------------------------------------------------------------------
def _ddp_model(group, **kwargs):
    return DistributedDataParallel(make_model(), process_group=group, **kwargs)


def _zero_case(rank: int, group, case, _directory) -> None:
    """ZeroRedundancyOptimizer with the tritonopt class over DDP equals it with torch's class:
    every parameter on every rank, the local optimizer's state, and the consolidated state_dict.
    Parameters stay where ZeRO put them (its buckets when ``parameters_as_bucket_view=True``:
    ZeRO re-points ``p.data`` into them after building the local optimizer, then broadcasts them)."""
    optimizer_case, bucket_view = case
    runs = []
    for optimizer_class in (optimizer_case.torch_class, optimizer_case.tritonopt_class):
        model = _ddp_model(group)
        optimizer = ZeroRedundancyOptimizer(
            model.parameters(),
            optimizer_class=optimizer_class,
            process_group=group,
            parameters_as_bucket_view=bucket_view,
            **optimizer_case.kwargs,
        )
        losses, disturbed = _train(model, optimizer, rank, range(STEPS))
        optimizer.consolidate_state_dict(to=0)
        runs.append((model, optimizer, losses, disturbed))
    (ref_model, ref_opt, ref_losses, _), (cand_model, cand_opt, cand_losses, disturbed) = runs
    gathered = _gather(_flat_params(cand_model), group)

    def consolidated_state_matches():
        if rank == 0:
            ref_state, cand_state = ref_opt.state_dict()["state"], cand_opt.state_dict()["state"]
            assert cand_state.keys() == ref_state.keys(), f"consolidated state of {sorted(cand_state)}"
            for index, entry in ref_state.items():
                for key, value in entry.items():
                    torch.testing.assert_close(
                        cand_state[index][key], value, msg=lambda m, i=index, k=key: f"consolidated state {i} {k!r}\n{m}"
                    )

    _assert_all(
        lambda: _assert_ranks_equal(gathered, cand_model, "tritonopt's run"),
        lambda: _assert_losses_match(ref_losses, cand_losses, "losses"),
        lambda: _assert_local_match(ref_model, ref_opt.optim, cand_model, cand_opt.optim, f"after {STEPS} steps"),
        lambda: assert_optimizers_match(ref_opt.optim, cand_opt.optim, "the local optimizer's state_dict"),
        consolidated_state_matches,
        lambda: _assert_undisturbed(disturbed, "ZeRO and DDP"),
    )


def _ddp_case(rank: int, group, case, _directory) -> None:
    """DDP then the optimizer: equal to torch's run on every rank, and ``step()`` leaves every
    ``p.grad`` the tensor DDP (a view of its bucket with ``gradient_as_bucket_view=True``) or
    autograd put there, at the same address, with the same values: no gradient copy."""
    optimizer_case, bucket_view = case
    runs = []
    for optimizer_class in (optimizer_case.torch_class, optimizer_case.tritonopt_class):
        model = _ddp_model(group, gradient_as_bucket_view=bucket_view)
        optimizer = optimizer_class(model.parameters(), **optimizer_case.kwargs)
        runs.append((model, optimizer, *_train(model, optimizer, rank, range(STEPS))))
    (ref_model, ref_opt, ref_losses, _), (cand_model, cand_opt, cand_losses, disturbed) = runs
    gathered = _gather(_flat_params(cand_model), group)
    _assert_all(
        lambda: _assert_ranks_equal(gathered, cand_model, "tritonopt's run"),
        lambda: _assert_undisturbed(disturbed, "DDP"),
        lambda: _assert_losses_match(ref_losses, cand_losses, "losses"),
        lambda: assert_optimizers_match(ref_opt, cand_opt, f"after {STEPS} steps"),
    )


# --- what tritonopt refuses --------------------------------------------------------
def _mixed_meshes_case(rank: int, group, optimizer_case, _directory) -> None:
    """DTensors of two meshes in one group: a clear error at construction, nothing moved.
    (Updates run per group and launch; one group's state is laid out for one mesh.)"""
    from torch.distributed.tensor import Replicate, Shard

    whole = DeviceMesh("cpu", list(range(WORLD_SIZE)), _init_backend=False)
    own = DeviceMesh("cpu", [rank], _init_backend=False)
    params = [
        torch.nn.Parameter(DTensor.from_local(torch.randn(2, 3), whole, [Shard(0)], run_check=False)),
        torch.nn.Parameter(DTensor.from_local(torch.randn(5), own, [Replicate()], run_check=False)),
    ]
    locals_before = [(p.to_local().data_ptr(), p.to_local().clone()) for p in params]
    with pytest.raises(ValueError, match="mixes DTensors of 2 device meshes"):
        optimizer_case.tritonopt_class(params, **optimizer_case.kwargs)
    optimizer_case.tritonopt_class([{"params": params[:1]}, {"params": params[1:]}], **optimizer_case.kwargs)
    for p, (address, values) in zip(params, locals_before):
        assert p.to_local().data_ptr() == address and torch.equal(p.to_local(), values)


@pytest.mark.parametrize("case", OPTIMIZER_IDS)
def test_a_group_mixing_device_meshes_is_refused(outcome, case):
    outcome("mixed_meshes", case)


BUCKET_CASES = {f"{case.name}-bucket_view={flag}": (case, flag) for case in OPTIMIZERS for flag in (True, False)}
SCENARIOS = {
    "mixed_meshes": (_mixed_meshes_case, {case.name: case for case in OPTIMIZERS}),
    "fully_shard": (_fully_shard_case, {case.name: case for case in OPTIMIZERS}),
    "checkpoint": (_checkpoint_case, {case.name: case for case in OPTIMIZERS}),
    "zero": (_zero_case, BUCKET_CASES),
    "ddp": (_ddp_case, BUCKET_CASES),
}


@pytest.mark.parametrize("case", list(BUCKET_CASES))
def test_zero_redundancy_optimizer_matches_torch(outcome, case):
    outcome("zero", case)


@pytest.mark.parametrize("case", list(BUCKET_CASES))
def test_ddp_gradients_stay_where_ddp_put_them(outcome, case):
    outcome("ddp", case)
