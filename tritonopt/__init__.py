"""tritonopt: torch.optim-compatible optimizers whose steps are Triton kernels over flat buffers."""

from .sgd import SGD

__all__ = ["SGD"]
__version__ = "0.1.0"
