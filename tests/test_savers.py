"""Savers see a model trained by tritonopt as ordinary tensors: one storage per parameter.

accelerate's ``save_state``/``load_state`` (safetensors, its default), safetensors'
``save_model``/``load_model`` and ``torch.save`` of one parameter each keep one tensor
per storage they find; parameters that shared one flat buffer would be dropped as
"tied", refused, or saved whole. Each test trains the same model with a tritonopt
optimizer and with torch.optim's class of that name (``integration.OPTIMIZERS``),
saves, loads into a freshly built model and optimizer, and compares.
"""

import pytest
import safetensors
import safetensors.torch
import torch
from accelerate import Accelerator
from torch import nn

from integration import OPTIMIZER_IDS, OPTIMIZERS, batch, loss_of, make_model
from tritonopt.testing import assert_optimizers_match

STEPS = 2


def _train(model, optimizer, steps, backward=torch.Tensor.backward, device="cpu"):
    for step in steps:
        optimizer.zero_grad()
        tokens, weights = batch(step)
        backward(loss_of(model, tokens.to(device), weights.to(device)))
        optimizer.step()


def _trained(optimizer_class, kwargs, seed: int = 0):
    model = make_model(seed)
    optimizer = optimizer_class(model.parameters(), **kwargs)
    _train(model, optimizer, range(STEPS))
    return model, optimizer


def _saved_names(path) -> list[str]:
    with safetensors.safe_open(str(path), framework="pt") as file:
        return list(file.keys())


def _assert_models_equal(expected: nn.Module, actual: nn.Module, context: str) -> None:
    for (name, value), restored in zip(expected.state_dict().items(), actual.state_dict().values(), strict=True):
        assert torch.equal(restored.cpu(), value.cpu()), f"{context}: {name} differs"


@pytest.mark.parametrize("case", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_accelerate_save_state_and_load_state_restore_model_and_optimizer(case, tmp_path):
    """prepare() already calls ``optimizer.load_state_dict(optimizer.state_dict())``; load_state
    loads the weights with safetensors' ``load_model`` (copies into the parameters) and calls
    ``optimizer.load_state_dict`` with the state saved in optimizer.bin."""
    accelerator = Accelerator()
    ref_model = make_model().to(accelerator.device)
    ref_opt = case.torch_class(ref_model.parameters(), **case.kwargs)
    model = make_model()
    # accelerate's usual order: the optimizer is built before prepare (which moves the model to its device)
    model, optimizer = accelerator.prepare(model, case.tritonopt_class(model.parameters(), **case.kwargs))
    _train(ref_model, ref_opt, range(STEPS), device=accelerator.device)
    _train(model, optimizer, range(STEPS), backward=accelerator.backward, device=accelerator.device)
    assert_optimizers_match(ref_opt, optimizer.optimizer, f"after {STEPS} steps")
    accelerator.save_state(tmp_path)

    names = _saved_names(tmp_path / "model.safetensors")
    assert sorted(names) == sorted(model.state_dict()), f"model.safetensors holds {names}"
    restorer = Accelerator()  # a fresh run: its own model and optimizer, built before load_state
    restored_model = make_model(seed=1)
    restored_model, restored_opt = restorer.prepare(
        restored_model, case.tritonopt_class(restored_model.parameters(), **case.kwargs)
    )
    restorer.load_state(tmp_path)
    _assert_models_equal(model, restored_model, "restored weights")
    assert_optimizers_match(optimizer.optimizer, restored_opt.optimizer, "restored optimizer")

    _train(ref_model, ref_opt, [STEPS], device=accelerator.device)
    _train(restored_model, restored_opt, [STEPS], backward=restorer.backward, device=restorer.device)
    assert_optimizers_match(ref_opt, restored_opt.optimizer, "a step after load_state")


@pytest.mark.parametrize("case", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_safetensors_save_model_and_load_model(case, tmp_path):
    ref_model, ref_opt = _trained(case.torch_class, case.kwargs)
    model, optimizer = _trained(case.tritonopt_class, case.kwargs)
    assert_optimizers_match(ref_opt, optimizer, f"after {STEPS} steps")
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(model, str(path))
    assert sorted(_saved_names(path)) == sorted(model.state_dict())

    # load into fresh models whose fresh optimizers already hold their parameters, then step both
    fresh = []
    for optimizer_class in (case.torch_class, case.tritonopt_class):
        fresh_model = make_model(seed=1)
        fresh_opt = optimizer_class(fresh_model.parameters(), **case.kwargs)
        missing, unexpected = safetensors.torch.load_model(fresh_model, str(path))
        assert not missing and not unexpected, (missing, unexpected)
        _assert_models_equal(model, fresh_model, f"{optimizer_class.__name__}'s model after load_model")
        _train(fresh_model, fresh_opt, [STEPS])
        fresh.append(fresh_opt)
    assert_optimizers_match(*fresh, "a step after load_model")


@pytest.mark.parametrize("case", OPTIMIZERS, ids=OPTIMIZER_IDS)
def test_torch_save_of_one_parameter_writes_only_its_bytes(case, tmp_path):
    ref_model, _ = _trained(case.torch_class, case.kwargs)
    model, _ = _trained(case.tritonopt_class, case.kwargs)
    bias = model.fc.bias
    torch.testing.assert_close(bias.detach(), ref_model.fc.bias.detach())
    torch.save(bias, tmp_path / "bias.pt")
    torch.save(nn.Parameter(bias.detach().clone()), tmp_path / "copy.pt")

    size, own_size = (tmp_path / "bias.pt").stat().st_size, (tmp_path / "copy.pt").stat().st_size
    assert size <= own_size, f"{size} bytes for a {bias.numel()}-element bias; {own_size} for a copy of it"
    loaded = torch.load(tmp_path / "bias.pt", weights_only=True)
    assert isinstance(loaded, nn.Parameter) and torch.equal(loaded, bias)
