"""Model presets: real parameter shapes, a fixed random batch and a loss, small enough for CPU."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..models import LeNet


@dataclass
class Preset:
    """A model and the loss of one fixed batch on it."""

    model: nn.Module
    loss: Callable[[nn.Module], torch.Tensor]


class TinyGPT(nn.Module):
    """GPT-2's block structure (token and position embeddings, pre-norm attention and GELU
    MLP blocks, final LayerNorm, LM head) at a width that steps in seconds on CPU."""

    def __init__(self, vocab: int = 512, context: int = 32, width: int = 128, heads: int = 4, layers: int = 2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.tokens(tokens) + self.positions(positions)
        causal = nn.Transformer.generate_square_subsequent_mask(tokens.shape[1], device=tokens.device, dtype=x.dtype)
        return self.head(self.norm(self.blocks(x, mask=causal, is_causal=True)))


def lenet(generator: torch.Generator) -> Preset:
    """LeNet (the demo's model) on random 3x32x32 images with random labels (cross-entropy)."""
    images = torch.randn(16, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 10, (16,), generator=generator)
    return Preset(LeNet(), lambda model: nn.functional.cross_entropy(model(images.to(_dtype(model))), labels))


def gpt(generator: torch.Generator) -> Preset:
    """TinyGPT on random token sequences (next-token cross-entropy)."""
    model = TinyGPT()
    tokens = torch.randint(0, model.tokens.num_embeddings, (4, model.positions.num_embeddings + 1), generator=generator)

    def loss(model: nn.Module) -> torch.Tensor:
        logits = model(tokens[:, :-1])
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    return Preset(model, loss)


def _dtype(model: nn.Module) -> torch.dtype:
    return next(model.parameters()).dtype


PRESETS = {"lenet": lenet, "gpt": gpt}
