"""The parameter layouts benchmarked, sized per device (a GPU gets the issue's full sizes).

A case is a list of param groups, each a list of shapes with per-group overrides.
Shapes only: the data is drawn when a case is built, the same for every
implementation.

A case with ``new_grads`` gives every step new gradient tensors, as the default
``zero_grad()`` loop does (``set_to_none=True``, what HF Trainer and Lightning call:
autograd allocates the next step's gradients afresh). Before each step, outside
its timing, ``p.grad`` is set to the next of ``GRAD_SETS`` gradient sets (the
gradients ``build_params`` set, and ``GRAD_SETS - 1`` from ``grad_pool``, made once
per built copy), so every step reads gradients at other addresses than the step
before, for every implementation alike.
"""

import math
from dataclasses import dataclass, replace
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
    new_grads: bool = False  # new gradient tensors every step (the zero_grad() loop)

    @property
    def name(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.optimizer.name} {self.variant} {dtype} {self.layout}" + (" new grads" if self.new_grads else "")

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
    groups: tuple[int, ...]  # one many-groups layout (and its one-group twin) per count
    tensors_per_group: int
    group_numel: int
    # also ``small_tensors`` tensors of this many elements (a multiple of 16), or None:
    # tritonopt's CPU path runs torch's fused op only over tensors of whole 16-element
    # vectors, foreach ops over the others (1,000 and 100 are not multiples of 16)
    small_numel_whole: int | None = None


SIZES = {
    "cuda": Sizes(2**26, 10_000, 1_000, 1, (500,), 20, 1_000),
    "cpu": Sizes(2**23, 10_000, 1_000, 4, (100, 500), 20, 100, 1_008),
    "cpu-quick": Sizes(2**21, 2_000, 1_000, 8, (100, 500), 20, 100, 1_008),
    "cuda-quick": Sizes(2**26, 10_000, 1_000, 1, (500,), 20, 1_000),
    # a plumbing check of the benchmark (bench/gpu_check.sh --dry-run), not a measurement
    "cpu-tiny": Sizes(2**10, 4, 100, 64, (2,), 2, 100),
    "cuda-tiny": Sizes(2**10, 4, 100, 64, (2,), 2, 100),
}
# Gradient sets per built copy of a ``new_grads`` case (``build_params``' own
# included): each step takes the next.
GRAD_SETS = 3


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
    gpt2 = gpt2_small_groups(sizes.gpt2_scale)
    result = {
        f"1x{sizes.large_elements}": ((((sizes.large_elements,),),), ({},)),
        f"{sizes.small_tensors}x{sizes.small_numel}": (
            (((sizes.small_numel,),) * sizes.small_tensors,),
            ({},),
        ),
        f"gpt2-small/{sizes.gpt2_scale} 2 groups": (gpt2, ({}, optimizer.no_decay)),
    }
    for groups in sizes.groups:
        many = tuple(((sizes.group_numel,),) * sizes.tensors_per_group for _ in range(groups))
        # layer-wise lr decay: every group its own lr
        result[f"{groups} groups x{sizes.tensors_per_group}x{sizes.group_numel}"] = (
            many,
            tuple({"lr": lr * 0.99**i} for i in range(groups)),
        )
        # the same parameters in one group: what the many-groups case is measured against
        result[f"1 group x{groups * sizes.tensors_per_group}x{sizes.group_numel}"] = ((sum(many, ()),), ({},))
    if sizes.small_numel_whole:
        result[f"{sizes.small_tensors}x{sizes.small_numel_whole}"] = (
            (((sizes.small_numel_whole,),) * sizes.small_tensors,),
            ({},),
        )
    return result


def default_cases(device: str, quick: bool, tiny: bool = False) -> list[Case]:
    """The preset: every layout in float32 and bfloat16 with the default variant, the
    other variants on the large layout; AdamW on the finetuning split only. ``quick``
    keeps bfloat16 and the variants to the large layout. In float32 with the default
    variant, the many-small-tensors and GPT-2 layouts are also measured with new
    gradients every step, each right after its in-place twin. ``tiny``: the first
    case only, at a few thousand elements."""
    if tiny:
        return _first_tiny_case(device)
    sizes = SIZES[f"{device}-quick" if quick else device]
    cases = []
    for optimizer in OPTIMIZERS.values():
        default_variant = next(iter(optimizer.variants))
        new_grads_layouts = _new_grads_layouts(sizes, optimizer)
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
                    if dtype == torch.float32 and variant == default_variant and layout in new_grads_layouts:
                        cases.append(replace(cases[-1], new_grads=True))
    return cases


def _new_grads_layouts(sizes: Sizes, optimizer: OptimizerEntry) -> list[str]:
    """Layouts measured with new gradients every step too: many small tensors (per-tensor
    costs, on both CPU branches) and the GPT-2 split (a real model's shapes)."""
    names = list(layouts(sizes, optimizer))
    return [names[1], names[2]] + ([names[-1]] if sizes.small_numel_whole else [])


def with_new_grads(cases: list[Case]) -> list[Case]:
    """Each case followed by its ``new_grads`` twin (``--new-grads``), without duplicates."""
    result = []
    for case in cases:
        result.append(case)
        twin = replace(case, new_grads=True)
        if not case.new_grads and twin not in cases:
            result.append(twin)
    return result


def _first_tiny_case(device: str) -> list[Case]:
    optimizer = next(iter(OPTIMIZERS.values()))
    layout, (groups, overrides) = next(iter(layouts(SIZES[f"{device}-tiny"], optimizer).items()))
    return [Case(layout, groups, overrides, optimizer, next(iter(optimizer.variants)), torch.float32)]


def grad_pool(case: Case, device: torch.device, seed: int = 1) -> list[list[torch.Tensor]]:
    """``GRAD_SETS - 1`` sets of random gradients, one tensor per parameter in group order."""
    generator = torch.Generator().manual_seed(seed)
    shapes = [shape for group in case.groups for shape in group]
    return [
        [torch.randn(shape, generator=generator).to(device, case.dtype) for shape in shapes]
        for _ in range(GRAD_SETS - 1)
    ]


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

