"""The parameter layouts benchmarked, sized per device (a GPU gets the issue's full sizes).

A case is a list of param groups, each a list of shapes with per-group overrides.
Shapes only: the data is drawn when a case is built, the same for every
implementation.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch

from .optimizers import ADAMW, OPTIMIZERS, OptimizerEntry

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Case:
    """One layout x optimizer variant x dtype: what a table row is measured on."""

    layout: str
    groups: tuple[Shapes, ...]
    group_overrides: tuple[dict[str, Any], ...]
    optimizer: OptimizerEntry
    variant: str
    dtype: torch.dtype

    @property
    def name(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.optimizer.name} {self.variant} {dtype} {self.layout}"

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return self.optimizer.variants[self.variant]

    @property
    def tensors(self) -> int:
        return sum(len(shapes) for shapes in self.groups)

    @property
    def elements(self) -> int:
        return sum(math.prod(shape) for shapes in self.groups for shape in shapes)

    @property
    def minimal_bytes(self) -> int:
        return self.optimizer.minimal_bytes(self.hyperparameters, self.elements, self.dtype)


@dataclass(frozen=True)
class Sizes:
    large_elements: int
    small_tensors: int
    small_numel: int
    gpt2_scale: int  # GPT-2 small's widths divided by this
    groups: int
    tensors_per_group: int
    group_numel: int


SIZES = {
    "cuda": Sizes(2**26, 10_000, 1_000, 1, 500, 20, 1_000),
    "cpu": Sizes(2**23, 10_000, 1_000, 4, 500, 20, 100),
    "cpu-quick": Sizes(2**21, 2_000, 1_000, 8, 100, 20, 100),
    "cuda-quick": Sizes(2**26, 10_000, 1_000, 1, 500, 20, 1_000),
    # a plumbing check of the benchmark (bench/gpu_check.sh --dry-run), not a measurement
    "cpu-tiny": Sizes(2**10, 4, 100, 64, 2, 2, 100),
    "cuda-tiny": Sizes(2**10, 4, 100, 64, 2, 2, 100),
}


def gpt2_small_groups(scale: int) -> tuple[Shapes, Shapes]:
    """GPT-2 small's 148 parameter shapes (124M elements at ``scale`` 1) in the usual
    finetuning split: 2-D weights and embeddings decay, biases and layer norms do not."""
    width, vocab, context, layers = 768 // scale, 50257 // scale, 1024 // scale, 12
    decay: list[tuple[int, ...]] = [(vocab, width), (context, width)]
    no_decay: list[tuple[int, ...]] = []
    for _ in range(layers):
        no_decay += [(width,), (width,)]  # ln_1
        decay.append((width, 3 * width))  # attn.c_attn
        no_decay.append((3 * width,))
        decay.append((width, width))  # attn.c_proj
        no_decay.append((width,))
        no_decay += [(width,), (width,)]  # ln_2
        decay.append((width, 4 * width))  # mlp.c_fc
        no_decay.append((4 * width,))
        decay.append((4 * width, width))  # mlp.c_proj
        no_decay.append((width,))
    no_decay += [(width,), (width,)]  # ln_f
    return tuple(decay), tuple(no_decay)


def layouts(sizes: Sizes, optimizer: OptimizerEntry) -> dict[str, tuple[tuple[Shapes, ...], tuple[dict, ...]]]:
    """Layout name -> (groups of shapes, per-group overrides)."""
    lr = optimizer.variants[next(iter(optimizer.variants))]["lr"]
    many = tuple(((sizes.group_numel,),) * sizes.tensors_per_group for _ in range(sizes.groups))
    gpt2 = gpt2_small_groups(sizes.gpt2_scale)
    return {
        f"1x{sizes.large_elements}": ((((sizes.large_elements,),),), ({},)),
        f"{sizes.small_tensors}x{sizes.small_numel}": (
            (((sizes.small_numel,),) * sizes.small_tensors,),
            ({},),
        ),
        f"gpt2-small/{sizes.gpt2_scale} 2 groups": (gpt2, ({}, optimizer.no_decay)),
        # layer-wise lr decay: every group its own lr
        f"{sizes.groups} groups x{sizes.tensors_per_group}x{sizes.group_numel}": (
            many,
            tuple({"lr": lr * 0.99**i} for i in range(sizes.groups)),
        ),
        # the same parameters in one group: what the many-groups case is measured against
        f"1 group x{sizes.groups * sizes.tensors_per_group}x{sizes.group_numel}": (
            (sum(many, ()),),
            ({},),
        ),
    }


def default_cases(device: str, quick: bool, tiny: bool = False) -> list[Case]:
    """The preset: every layout in float32 and bfloat16 with the default variant, the
    other variants on the large layout; AdamW on the finetuning split only. ``quick``
    keeps bfloat16 and the variants to the large layout. ``tiny``: the first case
    only, at a few thousand elements."""
    if tiny:
        return _first_tiny_case(device)
    sizes = SIZES[f"{device}-quick" if quick else device]
    cases = []
    for optimizer in OPTIMIZERS.values():
        default_variant = next(iter(optimizer.variants))
        for index, (layout, (groups, overrides)) in enumerate(layouts(sizes, optimizer).items()):
            if optimizer is ADAMW and not layout.startswith("gpt2"):
                continue
            large = index == 0
            for dtype in (torch.float32, torch.bfloat16):
                if quick and dtype != torch.float32 and not (large or optimizer is ADAMW):
                    continue
                all_variants = large and (dtype == torch.float32 or not quick)
                for variant in optimizer.variants if all_variants else [default_variant]:
                    cases.append(Case(layout, groups, overrides, optimizer, variant, dtype))
    return cases


def _first_tiny_case(device: str) -> list[Case]:
    optimizer = next(iter(OPTIMIZERS.values()))
    layout, (groups, overrides) = next(iter(layouts(SIZES[f"{device}-tiny"], optimizer).items()))
    return [Case(layout, groups, overrides, optimizer, next(iter(optimizer.variants)), torch.float32)]


def build_params(case: Case, device: torch.device, seed: int = 0) -> list[dict[str, Any]]:
    """Param groups of fresh leaf tensors with random data and random gradients set once."""
    generator = torch.Generator().manual_seed(seed)
    param_groups = []
    for shapes, overrides in zip(case.groups, case.group_overrides):
        params = []
        for shape in shapes:
            param = torch.nn.Parameter(torch.randn(shape, generator=generator).to(device, case.dtype))
            param.grad = torch.randn(shape, generator=generator).to(device, case.dtype)
            params.append(param)
        param_groups.append({"params": params, **overrides})
    return param_groups

