"""A NaN the SGD kernel stores in bf16 has torch's bits (a quiet NaN), not just any NaN.

Found by mutation testing: NaN-equal comparisons accept a signalling or
differently-payloaded NaN, so the quiet bit of the bf16 rounding was untested.
"""

import pytest
import torch

import tritonopt
from tritonopt.kernels import sgd as sgd_kernels


@pytest.mark.skipif(not tritonopt.kernels_interpreted(), reason="CPU tensors need the interpreted kernels")
def test_bfloat16_nan_has_torchs_bits():
    params = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.bfloat16)
    grads = torch.tensor([float("nan"), 1.0, float("-nan"), float("inf")], dtype=torch.bfloat16)
    expected = params.clone().add_(grads, alpha=-0.1)  # torch's update
    sgd_kernels.sgd_update(
        [params], [grads], None, rows=[0], hyperparameters=[sgd_kernels.SGDHyperparameters(0.1, 0.0, 0.0, 0.0, False)],
        nesterov=False, maximize=False,
    )
    assert torch.equal(params.view(torch.int16), expected.view(torch.int16)), (params, expected)
