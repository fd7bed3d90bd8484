"""What the integration tests share (``test_distributed``, ``test_savers``, ``test_compile``).

Each integration test trains a model with a tritonopt optimizer through a component
that owns its parameters or gradients (FSDP2, ZeRO, DDP, a saver, ``torch.compile``)
and trains the same model with torch.optim's class of the same name through the same
component, on the same random data, then compares the two at float32's default
tolerances. ``OPTIMIZERS`` is the table those tests iterate over: a new optimizer is
a new row.
"""

from typing import NamedTuple

import torch
from torch import nn

import tritonopt


class OptimizerCase(NamedTuple):
    name: str
    tritonopt_class: type
    torch_class: type
    kwargs: dict


OPTIMIZERS = [
    OptimizerCase("SGD", tritonopt.SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    OptimizerCase("Adam", tritonopt.Adam, torch.optim.Adam, dict(lr=1e-2)),
    OptimizerCase("AdamW", tritonopt.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1)),
]
OPTIMIZER_IDS = [case.name for case in OPTIMIZERS]

VOCAB, WIDTH, HIDDEN, OUTPUTS = 37, 16, 11, 5


class Net(nn.Module):
    """Embedding, mean over the tokens, Linear, LayerNorm, tanh, Linear.

    The sizes are odd, so FSDP2 shards every parameter unevenly over two ranks.
    """

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.hidden = nn.Linear(WIDTH, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN)
        self.fc = nn.Linear(HIDDEN, OUTPUTS)

    def forward(self, tokens):
        return self.fc(torch.tanh(self.norm(self.hidden(self.embed(tokens).mean(1)))))


def make_model(seed: int = 0) -> Net:
    """A ``Net`` whose parameters (LayerNorm's too) are random and non-zero, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    model = Net()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model


def batch(step: int, rank: int = 0):
    """Random tokens and random loss weights (never zeros) for one rank's step."""
    generator = torch.Generator().manual_seed(10_000 * (rank + 1) + step)
    tokens = torch.randint(0, VOCAB, (4, 3), generator=generator)
    weights = torch.randn(4, OUTPUTS, generator=generator)
    return tokens, weights


def loss_of(model: nn.Module, tokens, weights):
    return (model(tokens) * weights).sum()
