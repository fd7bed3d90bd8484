"""Triton kernels of tritonopt, installed as ``tritonopt.kernels``.

One module per algorithm (``sgd``), each holding its ``@triton.jit`` kernel and
the launch helper that takes flat tensors. Shared ``@triton.jit`` helpers live in
``_elementwise``, launch configuration in ``_launch``. Nothing here knows about
``torch.optim``: callers pass flat buffers and plain numbers.
"""
