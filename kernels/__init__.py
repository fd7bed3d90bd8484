"""Triton kernels of tritonopt, installed as ``tritonopt.kernels``.

One module per algorithm (``sgd``, ``adam``), each holding its ``@triton.jit``
kernels and the launch helper that takes lists of tensors. Shared ``@triton.jit``
helpers live in ``_elementwise``, block tables in ``_blocks``, launch
configuration in ``_launch``. Nothing here knows about ``torch.optim``: callers
pass tensors and plain numbers.

The launch configuration's public face, for tuning (``python -m tritonopt.bench.sweep``):
``override_launch_config(block_size, num_warps)`` imposes one configuration on
every launch inside a ``with`` block, and ``device_key(device)`` names a device's
``LAUNCH_TABLE`` entry.
"""

from ._launch import device_key, override_launch_config

__all__ = ["device_key", "override_launch_config"]
