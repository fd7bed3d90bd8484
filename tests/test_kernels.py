"""Kernel-level tests over the optimizer table: every constexpr combination, dtypes, sizes around block boundaries.

Each optimizer's two update functions (Triton kernel, torch path) take the same
lists of tensors and are compared with torch's for-loop update
(``_single_tensor_sgd``, ``_single_tensor_adam``) on the same data, tensor by
tensor, with the table's tolerance (SGD: bit for bit). For bf16/fp16 the expected
result is torch's update computed in fp32 and rounded once to the storage dtype.
The launches and the torch reference per optimizer are in ``optimizers.py``.
"""

import pytest
import torch
import triton
import triton.language as tl

import tritonopt
from tritonopt.kernels._elementwise import _round_to_bfloat16

from conftest import DEVICE
from launch_tensors import assert_guards_untouched, launch_views
from optimizers import kernel_optimizers, kernel_params

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
IMPLEMENTATIONS = ["triton", "torch-path"] if tritonopt.kernels_interpreted() or DEVICE.type == "cuda" else ["torch-path"]


def _update(info, implementation):
    return info.kernel_update if implementation == "triton" else info.torch_update


def _expected(info, launch, param, grad, state, row):
    """The table's torch update of one tensor; for 16-bit dtypes computed in fp32, rounded once."""
    compute = torch.float32 if param.dtype in (torch.bfloat16, torch.float16) else param.dtype
    param, grad = param.to(compute, copy=True), grad.to(compute, copy=True)
    state = {key: value.to(compute, copy=True) for key, value in state.items()}
    return info.kernel_cases.expected(param, grad, state, row, launch.switches)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("info, launch", kernel_params())
def test_update_matches_torch(info, launch, dtype, implementation):
    cases = info.kernel_cases
    params, grads = launch_views(dtype, 0), launch_views(dtype, 1)
    # The state buffers these launches use (one absent from a launch must stay untouched).
    used = {key for case in cases.launches for key in case.buffers}
    states = {
        key: launch_views(dtype, 2 + i, cases.initial_state.get(key))
        for i, key in enumerate(info.cls.state_buffer_keys)
        if key in used
    }
    rows = [index % 2 for index in range(len(params))]
    expected = [
        _expected(info, launch, p, g, {key: states[key][index][1] for key in launch.buffers}, launch.rows[rows[index]])
        for index, ((_, p), (_, g)) in enumerate(zip(params, grads))
    ]
    columns = {"param": params, "grad": grads, **states}
    before = {name: [storage.clone() for storage, _ in column] for name, column in columns.items()}
    views = {name: [view for _, view in column] for name, column in columns.items()}
    _update(info, implementation)(
        views["param"], views["grad"],
        *(views[key] if key in launch.buffers else None for key in info.cls.state_buffer_keys),
        rows=rows, hyperparameters=launch.rows, **launch.switches,
    )

    for index, (expected_param, expected_state) in enumerate(expected):
        message = f"tensor {index} of {views['param'][index].numel()} elements, row {rows[index]}"
        torch.testing.assert_close(views["param"][index], expected_param.to(dtype), msg=message, **cases.tolerance)
        for key in states:
            storage, view = states[key][index]
            if key in launch.buffers:
                torch.testing.assert_close(view, expected_state[key].to(dtype), msg=f"{message}: {key}", **cases.tolerance)
            else:
                assert torch.equal(storage, before[key][index]), f"{message}: {key} is not this launch's"
        grad = views["grad"][index]
        start, end = grad.storage_offset(), grad.storage_offset() + grad.numel()
        assert torch.equal(grad, before["grad"][index][start:end]), "without a grad scaler the gradient is read-only"
        for name in ("param", *launch.buffers):
            assert_guards_untouched(*columns[name][index], before[name][index], f"{message}: {name}")


@pytest.mark.parametrize("info", kernel_optimizers())
def test_a_launch_without_a_buffer_its_switches_need_is_rejected(info):
    key = info.kernel_cases.optional_buffer
    launch = next(launch for launch in info.kernel_cases.launches if key in launch.buffers)
    t = torch.randn(4)
    buffers = [None if k == key else t.abs() for k in info.cls.state_buffer_keys]
    with pytest.raises(ValueError, match=f"{key}s"):  # the launcher's argument: momentum_buffers, max_exp_avg_sqs
        info.kernel_update([t], [t.clone()], *buffers, rows=[0], hyperparameters=launch.rows[:1], **launch.switches)


@pytest.mark.skipif(not tritonopt.kernels_interpreted() and DEVICE.type != "cuda", reason="needs runnable kernels")
def test_bfloat16_rounding_is_round_to_nearest_even():
    """The explicit rounding agrees with torch's fp32 -> bf16 on ties, NaN, inf and subnormals."""

    @triton.jit
    def round_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < n
        tl.store(out_ptr + offsets, _round_to_bfloat16(tl.load(x_ptr + offsets, mask=mask)), mask=mask)

    generator = torch.Generator().manual_seed(0)
    random_bits = torch.randint(-(2**31), 2**31 - 1, (4096,), generator=generator, dtype=torch.int64)
    special = torch.tensor(
        [0.0, -0.0, 1.0, float("inf"), float("-inf"), float("nan"), 3.4e38, -3.4e38, 1e-40, -1e-45,
         1.00390625, 1.01171875, 1.0029296875, 255.5],  # exact ties and just above/below them
        dtype=torch.float32,
    )
    x = torch.cat([random_bits.to(torch.int32).view(torch.float32), special]).to(DEVICE)
    out = torch.empty_like(x, dtype=torch.bfloat16)
    round_kernel[(triton.cdiv(x.numel(), 1024),)](x, out, x.numel(), BLOCK=1024)
    expected = x.to(torch.bfloat16)
    nan = expected.isnan()
    assert torch.equal(out.isnan(), nan)
    assert torch.equal(out[~nan].view(torch.int16), expected[~nan].view(torch.int16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_torch_cpu_fused_sgd_is_still_wrong_for_16_bit(dtype):
    """Why the torch path updates 16-bit segments through fp32 copies.

    torch's CPU ``_fused_sgd_`` is far off for 16-bit tensors in this torch. When a
    torch release fixes it, this test fails, saying the fp32 detour can go.
    """
    generator = torch.Generator().manual_seed(0)
    param, grad = (torch.randn(64, generator=generator).to(dtype) for _ in range(2))
    expected = (param.float() - 0.1 * grad.float()).to(dtype)
    torch._fused_sgd_([param], [grad], [], weight_decay=0.0, momentum=0.0, lr=0.1, dampening=0.0,
                      nesterov=False, maximize=False, is_first_step=False)
    assert not torch.allclose(param.float(), expected.float(), atol=0.01)
