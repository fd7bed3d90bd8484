"""tritonopt: torch.optim-compatible optimizers whose steps are Triton kernels over flat buffers."""

from .adam import Adam, AdamW
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW"]
__version__ = "0.1.0"
