"""Rounding modes of 16-bit parameters and 16-bit state: stochastic rounding is unbiased,
bounded and reproducible, Kahan compensation beats fp32 master weights step by step,
a resumed run is bit-identical, and the kernels and the CPU path draw the same bits."""

import io
import math

import pytest
import torch
import triton
import triton.language as tl

import tritonopt
from optimizers import OPTIMIZERS, params
from tritonopt import _rounding
from tritonopt.distance import distance
from tritonopt.kernels._rounding import random_bits, stochastic_round_to_bfloat16

pytestmark = pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="compares with the interpreted kernels")


@triton.jit
def _randint_kernel(out_ptr, seed, N: tl.constexpr):
    offsets = tl.arange(0, N)
    tl.store(out_ptr + offsets, tl.randint(seed, offsets.to(tl.int64) * 977 + 5))


@triton.jit
def _stochastic_round_kernel(values_ptr, out_ptr, stream, position, seed_lo, seed_hi, N: tl.constexpr):
    offsets = tl.arange(0, N)
    bits = random_bits(offsets.to(tl.int64) * 97 + (1 << 33), stream, position, seed_lo, seed_hi)
    values = tl.load(values_ptr + offsets)
    tl.store(out_ptr + offsets, stochastic_round_to_bfloat16(values, bits))


def test_philox_is_tritons_randint():
    """The CPU path's Philox4x32-10 is what ``tl.randint`` draws (stream and position 0)."""
    seed = 0x1234_5678_9ABC
    out = torch.empty(256, dtype=torch.int32)
    _randint_kernel[(1,)](out, seed, N=256)
    index = torch.arange(256, dtype=torch.int64) * 977 + 5
    expected = _rounding.random_bits(index, 0, 0, seed)
    assert torch.equal(out.to(torch.int64) & 0xFFFFFFFF, expected)


@pytest.mark.parametrize("stream,position", [(0, 0), (7, 123456), (2**32 - 1, 2**31 + 3)])
def test_kernel_and_cpu_stochastic_rounding_are_the_same_bits(stream, position):
    values = torch.randn(512, generator=torch.Generator().manual_seed(stream % 1000)) * 10.0 ** torch.randint(
        -30, 30, (512,), generator=torch.Generator().manual_seed(1)
    )
    values[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    seed = 0xDEAD_BEEF_0123_4567
    out = torch.empty(512, dtype=torch.bfloat16)
    _stochastic_round_kernel[(1,)](values, out, stream, position, seed & 0xFFFFFFFF, seed >> 32, N=512)
    index = torch.arange(512, dtype=torch.int64) * 97 + (1 << 33)
    expected = _rounding.stochastic_round_to_bfloat16(values, _rounding.random_bits(index, stream, position, seed))
    assert torch.equal(out.view(torch.int16), expected.view(torch.int16))


def _neighbours(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bf16 values just below and above (in magnitude) each fp32 value."""
    bits = values.view(torch.int32)
    low = (bits & ~0xFFFF).view(torch.float32)
    high = ((bits & ~0xFFFF) + 0x10000).view(torch.float32)
    return low, high


def test_stochastic_rounding_is_unbiased_bounded_and_deterministic():
    """Each of 256 values at random positions between bf16 neighbours, rounded 4096
    times (independent draws: other positions of the stream), averages to itself
    within six standard deviations of the mean (a Bernoulli's variance is at most a
    quarter ULP squared), and every rounding is one of its two neighbours."""
    generator = torch.Generator().manual_seed(0)
    values = (torch.rand(256, generator=generator) + 0.5) * 2.0 ** torch.randint(-20, 20, (256,), generator=generator)
    values = values * torch.where(torch.rand(256, generator=generator) < 0.5, -1.0, 1.0)
    draws = 4096
    repeated = values.expand(draws, -1)
    index = torch.arange(values.numel(), dtype=torch.int64).expand(draws, -1)
    positions = torch.arange(draws).unsqueeze(1)
    # One Philox draw per (position, element): the same counters the kernels use.
    bits = torch.stack([_rounding.random_bits(index[0], 3, int(p), 99) for p in positions[:, 0]])
    rounded = _rounding.stochastic_round_to_bfloat16(repeated.contiguous(), bits).double()
    low, high = _neighbours(values)
    assert ((rounded == low.double()) | (rounded == high.double())).all()
    ulp = (high - low).double().abs()
    mean_error = (rounded.mean(dim=0) - values.double()) / ulp
    bound = 6 * 0.5 / math.sqrt(draws)
    assert mean_error.abs().max() < bound, (mean_error.abs().max(), bound)
    # Both neighbours occur: the draws are not all alike.
    assert ((rounded == high.double()).any(dim=0) & (rounded == low.double()).any(dim=0)).float().mean() > 0.9
    again = _rounding.stochastic_round_to_bfloat16(repeated.contiguous(), bits)
    assert torch.equal(again.double(), rounded)
    other_seed = torch.stack([_rounding.random_bits(index[0], 3, int(p), 100) for p in positions[:8, 0]])
    assert not torch.equal(other_seed, bits[:8])


def _run(info, rounding, state_dtype, path, steps=4, dtype=torch.bfloat16, save_at=None, seed=5):
    """``steps`` steps of ``info``'s optimizer on two bf16 parameters (one not a whole
    vector, one transposed); with ``save_at``, saved through torch.save and resumed in
    a fresh optimizer there. Returns the parameters and the state."""
    generator = torch.Generator().manual_seed(0)
    starts = [torch.randn(37, 5, generator=generator), torch.randn(16, 4, generator=generator).t()]
    grads = [[torch.randn(s.shape, generator=generator) for s in starts] for _ in range(steps)]

    def build(values):
        params = [torch.nn.Parameter(v.to(dtype)) for v in values]
        kwargs = dict(info.kwargs, rounding=rounding, state_dtype=state_dtype)
        return params, info.cls(params, **kwargs)  # a stochastic seed drawn from torch's generator

    torch.manual_seed(seed)
    model, optimizer = build(starts)
    with tritonopt.cpu_implementation(path):
        for step, step_grads in enumerate(grads):
            if step == save_at:
                buffer = io.BytesIO()
                torch.save({"params": [p.detach() for p in model], "optimizer": optimizer.state_dict()}, buffer)
                buffer.seek(0)
                saved = torch.load(buffer, weights_only=True)
                torch.manual_seed(seed + 1)  # another default seed: the saved one must win
                model, optimizer = build([p.float() for p in saved["params"]])
                optimizer.load_state_dict(saved["optimizer"])
            for p, g in zip(model, step_grads):
                p.grad = g.to(dtype)
            optimizer.step()
    return [p.detach() for p in model], optimizer


def _bits(tensors):
    return [t.view(torch.int16) if t.element_size() == 2 else t for t in tensors]


MODES = [("stochastic", None), ("kahan", None), ("nearest", torch.bfloat16), ("kahan", torch.float32)]


@pytest.mark.parametrize("rounding,state_dtype", MODES, ids=lambda v: str(v).removeprefix("torch."))
@pytest.mark.parametrize("info", params())
def test_kernels_and_cpu_path_give_the_same_bits(info, rounding, state_dtype):
    (kernel_params, kernel_opt), (torch_params, torch_opt) = (
        _run(info, rounding, state_dtype, path) for path in ("triton", "torch")
    )
    for a, b in zip(kernel_params, torch_params):
        assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    for p_kernel, p_torch in zip(kernel_opt.param_groups[0]["params"], torch_opt.param_groups[0]["params"]):
        kernel_state, torch_state = kernel_opt.state[p_kernel], torch_opt.state[p_torch]
        assert kernel_state.keys() == torch_state.keys()
        for key in kernel_state:
            assert kernel_state[key].dtype == torch_state[key].dtype
            # fp32 Adam moments: the kernel is within a few ULPs of torch's fused op (the
            # project's fp32 rule); everything 16-bit, and SGD in any dtype, to the bit.
            exact = kernel_state[key].element_size() == 2 or info.name == "SGD"
            torch.testing.assert_close(kernel_state[key], torch_state[key], **(dict(rtol=0, atol=0) if exact else {}))


@pytest.mark.parametrize("rounding,state_dtype", MODES, ids=lambda v: str(v).removeprefix("torch."))
@pytest.mark.parametrize("info", params())
def test_resumed_run_is_bit_identical(info, rounding, state_dtype, cpu_path):
    uninterrupted, optimizer = _run(info, rounding, state_dtype, cpu_path)
    resumed, _ = _run(info, rounding, state_dtype, cpu_path, save_at=2)
    for a, b in zip(uninterrupted, resumed):
        assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    first = optimizer.state[optimizer.param_groups[0]["params"][0]]
    assert ("compensation" in first) == (rounding == "kahan")
    moment = first["momentum_buffer" if "momentum_buffer" in first else "exp_avg"]
    assert moment.dtype == (state_dtype or torch.bfloat16)
    assert optimizer.param_groups[0].get("rounding_step") == (4 if rounding == "stochastic" else None)


def _as_torch_state(optimizer, param, dtype):
    """tritonopt's state of ``param`` (compensation dropped) in ``dtype``, for torch's optimizer."""
    return {
        key: value.clone() if key == "step" else value.to(dtype)
        for key, value in optimizer.state[param].items()
        if key != "compensation"
    }


KAHAN_CASES = [
    pytest.param(info, dtype, switches, id=f"{info.name.lower()}-{str(dtype)[6:]}-{'-'.join(switches) or 'plain'}")
    for info in OPTIMIZERS
    for dtype in (torch.bfloat16, torch.float16)
    for switches in ({}, {"maximize": True}, {"weight_decay": 0.0}, *([{"nesterov": True}] if info.name == "SGD" else []))
]


@pytest.mark.parametrize("info,dtype,switches", KAHAN_CASES)
def test_kahan_pair_is_at_least_as_close_as_fp32_master_weights(info, dtype, switches, cpu_path):
    """At every step, from the shared state: the 16-bit parameter plus its compensation
    (summed in float64) is at least as close to torch's float64 step as fp32 master
    weights (torch's fp32 step from parameter + compensation) rounded to the dtype."""
    generator = torch.Generator().manual_seed(1)
    kwargs = dict(info.kwargs, **switches)
    if kwargs.get("nesterov"):
        kwargs["dampening"] = 0
    param = torch.nn.Parameter((torch.randn(203, generator=generator) * 0.5).to(dtype))
    optimizer = info.cls([param], rounding="kahan", **kwargs)
    for step in range(6):
        grad = torch.randn(203, generator=generator).to(dtype)
        compensation = optimizer.state[param].get("compensation", torch.zeros_like(param))
        results = {}
        for wide in (torch.float32, torch.float64):
            reference_param = torch.nn.Parameter(param.detach().to(wide) + compensation.to(wide))
            reference = info.torch_cls([reference_param], foreach=False, **kwargs)
            if optimizer.state[param]:
                reference.state[reference_param] = _as_torch_state(optimizer, param, wide)
            reference_param.grad = grad.to(wide)
            reference.step()
            results[wide] = reference_param.detach()
        param.grad = grad
        optimizer.step()
        pair = param.detach().double() + optimizer.state[param]["compensation"].double()
        exact = results[torch.float64]
        kahan = distance([pair], [exact]).total_abs
        master = distance([results[torch.float32].to(dtype)], [exact]).total_abs
        assert kahan <= master, f"step {step}: Kahan pair {kahan:.3e} vs fp32 master rounded {master:.3e}"
        assert kahan < master / 8, f"step {step}: the compensation carries little ({kahan:.3e} vs {master:.3e})"


STORAGE_ERRORS = [
    (dict(rounding="up"), "Invalid rounding: 'up'"),
    (dict(state_dtype=torch.int8), "Invalid state_dtype"),
    (dict(seed=-1), "Invalid seed"),
    (dict(seed=1.5), "Invalid seed"),
]


@pytest.mark.parametrize("kwargs,regex", STORAGE_ERRORS, ids=[r for _, r in STORAGE_ERRORS])
@pytest.mark.parametrize("info", params())
def test_bad_storage_keywords_raise(info, kwargs, regex):
    with pytest.raises(ValueError, match=regex):
        info.cls([torch.nn.Parameter(torch.randn(3))], **kwargs)
    with pytest.raises(ValueError, match=regex):
        info.cls([{"params": [torch.nn.Parameter(torch.randn(3))], **kwargs}])


@pytest.mark.parametrize("info", params())
def test_stochastic_rounding_of_float16_raises_and_fp32_is_stored_as_computed(info, cpu_path):
    half = torch.nn.Parameter(torch.randn(8, dtype=torch.float16))
    half.grad = torch.randn_like(half)
    with pytest.raises(ValueError, match="stochastic.*bfloat16 parameters, not torch.float16"):
        info.cls([half], rounding="stochastic", **info.kwargs).step()
    results = []
    for rounding in ("nearest", "stochastic", "kahan"):
        single = torch.nn.Parameter(torch.linspace(-1, 1, 40))
        optimizer = info.cls([single], rounding=rounding, **info.kwargs)
        for _ in range(3):
            single.grad = torch.cos(single.detach() * 7)
            optimizer.step()
        assert "compensation" not in optimizer.state[single]
        results.append(single.detach())
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


@pytest.mark.parametrize("info", params())
def test_state_dict_loads_into_torch_and_for_torch_drops_our_keys(info):
    """torch's optimizers load tritonopt's extra keys silently and never read them;
    ``tritonopt.for_torch`` drops them with a warning that names them."""
    param = torch.nn.Parameter(torch.randn(20).bfloat16())
    optimizer = info.cls([param], rounding="kahan", seed=3, **info.kwargs)
    param.grad = torch.randn_like(param)
    optimizer.step()
    saved = optimizer.state_dict()
    with pytest.warns(UserWarning, match="compensation.*rounding.*seed"):
        plain = tritonopt.for_torch(saved)
    assert "compensation" not in plain["state"][0] and "rounding" not in plain["param_groups"][0]
    assert "compensation" in saved["state"][0] and saved["param_groups"][0]["rounding"] == "kahan"
    reference = info.torch_cls([param], **info.kwargs)
    reference.load_state_dict(plain)
    reference.step()
    assert reference.state_dict()["param_groups"][0].keys() == saved["param_groups"][0].keys() - {"rounding", "seed"}


@pytest.mark.parametrize("info", params())
def test_kahan_is_capturable_and_stochastic_is_not(info, cpu_path):
    """Kahan's compensation is device state, so a capturable step gives the same bits as
    an eager one; stochastic rounding's stream position is a host value, so it refuses."""
    results = []
    for capturable in (False, True):
        param = torch.nn.Parameter(torch.linspace(-2, 2, 50).bfloat16())
        optimizer = info.cls([param], rounding="kahan", capturable=capturable, **info.kwargs)
        for step in range(3):
            param.grad = torch.cos(torch.arange(50.0) * (step + 1)).bfloat16()
            optimizer.step()
        results.append((param.detach().view(torch.int16), optimizer.state[param]["compensation"].view(torch.int16)))
    assert all(torch.equal(a, b) for a, b in zip(*results))
    param = torch.nn.Parameter(torch.randn(8).bfloat16())
    param.grad = torch.randn_like(param)
    with pytest.raises(ValueError, match="stochastic.*capturable"):
        info.cls([param], rounding="stochastic", capturable=True, **info.kwargs).step()
