"""tritonopt: torch.optim-compatible optimizers whose steps are Triton kernels over flat buffers."""

from ._backend import cpu_implementation, kernels_interpreted, uses_triton
from ._storage import for_torch
from .adam import Adam, AdamW
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "cpu_implementation", "for_torch", "kernels_interpreted", "uses_triton"]
__version__ = "0.1.0"
