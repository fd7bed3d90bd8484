"""Ahead-of-time GPU builds of tritonopt's kernels, and what their PTX does with memory.

Used by ``test_gpu_build.py``. Kernels are found generically: every
``@triton.jit`` function named ``*_kernel`` defined in a submodule of
``tritonopt.kernels`` (shared helpers and per-block bodies are named otherwise).
Their arguments follow the package's conventions: the block, tensor and
hyperparameter tables (``TABLE_POINTERS``), GradScaler's float32 scalars,
``ELEMENT`` (the storage dtype), ``BLOCK_SIZE``, ``STATE_ELEMENT`` (the state's
storage dtype) and ``ROUNDING`` (``kernels/_rounding.py``), and boolean code-path
switches. The boolean switches are built in every combination at the default
state dtype and rounding; ``rounding_builds`` adds the other modes.
"""

import importlib
import importlib.util
import itertools
import pkgutil
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

import tritonopt.kernels
from tritonopt.kernels._launch import LaunchConfig, table_configs
from tritonopt.kernels._rounding import KAHAN, NEAREST, STOCHASTIC

STORAGE_DTYPES = {"float32": 4, "float64": 8, "bfloat16": 2, "float16": 2}  # bytes per element
FLOAT32_SCALAR_POINTERS = {"grad_scale_ptr", "found_inf_ptr"}
# The tables a launch reads (kernels/_blocks.py): storage addresses come from them, not from arguments.
TABLE_POINTERS = {"blocks_ptr": "*i64", "tensors_ptr": "*i64", "hyperparameters_ptr": "*fp64"}
# What the runtime gives an aligned tensor or a multiple-of-16 int (``backend.parse_attr("D")``).
# Constexprs that are not boolean switches: the block size, the storage dtypes and the rounding mode.
NOT_SWITCHES = ("BLOCK_SIZE", "ELEMENT", "STEP_ELEMENT", "STATE_ELEMENT", "ROUNDING")
DIVISIBLE_BY_16 = [["tt.divisibility", 16]]
_COMPILED_PACKAGE = "_tritonopt_kernels_compiled"
# (rounding, parameter dtype, state dtype) of the builds beyond the default modes.
ROUNDING_BUILDS = (
    (STOCHASTIC, "bfloat16", "bfloat16"),
    (KAHAN, "bfloat16", "bfloat16"),
    (KAHAN, "float16", "float16"),
    (KAHAN, "bfloat16", "float32"),
    (NEAREST, "float32", "bfloat16"),
)


@dataclass(frozen=True)
class KernelVariant:
    """One kernel at one setting of its boolean switches and one storage dtype."""

    module: str
    kernel: triton.JITFunction
    flags: tuple[tuple[str, bool], ...]
    dtype: str
    config: LaunchConfig
    rounding: int = NEAREST
    state_dtype: str | None = None  # None: the parameters' dtype

    @property
    def id(self) -> str:
        switches = "-".join(name for name, on in self.flags if on) or "none"
        launch = f"{self.config.block_size}x{self.config.num_warps}w"
        storage = f"{self.dtype}" if self.state_dtype is None else f"{self.dtype}/{self.state_dtype}"
        return f"{self.module}.{self.kernel.__name__}[{storage}:r{self.rounding}:{switches}:{launch}]"


def launch_configs(capability: int) -> list[LaunchConfig]:
    """The configurations ``LAUNCH_TABLE`` can choose on an ``sm_<capability>`` GPU."""
    return table_configs(f"cuda:sm_{capability}")


def compiled_kernel_modules() -> list:
    """Fresh copies of ``tritonopt.kernels``' submodules, decorated with the interpreter off.

    Whether ``@triton.jit`` yields an interpreted function is decided when it
    decorates; the test session imports ``tritonopt.kernels`` under
    ``TRITON_INTERPRET=1``, so the compiled kernels come from a second copy of the
    package, imported under another name.
    """
    package_dir = Path(tritonopt.kernels.__file__).parent
    spec = importlib.util.spec_from_file_location(
        _COMPILED_PACKAGE, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    package = importlib.util.module_from_spec(spec)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(triton.knobs.runtime, "interpret", False)
        patch.setitem(sys.modules, _COMPILED_PACKAGE, package)
        spec.loader.exec_module(package)
        return [
            importlib.import_module(f"{_COMPILED_PACKAGE}.{info.name}")
            for info in pkgutil.iter_modules([str(package_dir)])
        ]


def kernel_builds(every_dtype: bool = False) -> list[tuple[KernelVariant, int]]:
    """(variant, compute capability) pairs to compile: every kernel, every combination
    of its boolean constexprs, in one storage dtype and one architecture each.

    Combination ``i`` gets the dtype indexed by the sum of ``i``'s base-4 digits
    (flipping any flag, or any two adjacent flags, changes the dtype, so every dtype
    meets every value of every flag) and sm_80 or sm_90 by the parity of its set
    flags. The all-switches-on combination is built in every dtype and at every launch
    configuration the table holds for its architecture; the others at the table's first.
    ``every_dtype`` builds the full product (flags x dtypes x configurations) for sm_90
    instead: several minutes.
    """
    dtypes = list(STORAGE_DTYPES)
    builds = []
    for module in compiled_kernel_modules():
        short_name = module.__name__.rsplit(".", 1)[1]
        for kernel in vars(module).values():
            if not (
                isinstance(kernel, triton.JITFunction)
                and kernel.fn.__module__ == module.__name__
                and kernel.__name__.endswith("_kernel")
            ):
                continue
            switches = [p.name for p in kernel.params if p.is_constexpr and p.name not in NOT_SWITCHES]
            for index, values in enumerate(itertools.product([False, True], repeat=len(switches))):
                flags = tuple(zip(switches, values))
                if every_dtype:
                    builds += [
                        (KernelVariant(short_name, kernel, flags, d, config), 90)
                        for d in dtypes
                        for config in launch_configs(90)
                    ]
                    continue
                digit_sum = sum(int(digit, 4) for digit in _base4(index))
                capability = 90 if sum(values) % 2 == 0 else 80
                chosen = dtypes if all(values) else [dtypes[digit_sum % len(dtypes)]]
                configs = launch_configs(capability) if all(values) else launch_configs(capability)[:1]
                builds += [
                    (KernelVariant(short_name, kernel, flags, d, config), capability)
                    for d in chosen
                    for config in configs
                ]
    return builds


def rounding_builds() -> list[tuple[KernelVariant, int]]:
    """Every kernel with every switch on (but capturable with stochastic rounding) in
    each of ``ROUNDING_BUILDS``, for sm_90."""
    builds = []
    for variant, capability in kernel_builds():
        if all(on for _, on in variant.flags) and variant.dtype == "float32":
            for rounding, dtype, state_dtype in ROUNDING_BUILDS:
                # Stochastic rounding is not capturable (the launchers refuse the pair).
                flags = tuple((name, on and not (rounding == STOCHASTIC and name == "CAPTURABLE")) for name, on in variant.flags)
                builds.append((KernelVariant(variant.module, variant.kernel, flags, dtype, variant.config,
                                             rounding, state_dtype), 90))
    return builds


def _base4(number: int) -> str:
    digits = ""
    while True:
        digits = str(number % 4) + digits
        number //= 4
        if number == 0:
            return digits


def _argument_type(name: str) -> str:
    if name in FLOAT32_SCALAR_POINTERS:
        return "*fp32"
    if name in TABLE_POINTERS:
        return TABLE_POINTERS[name]
    raise ValueError(f"argument {name!r} follows none of the kernel argument conventions")


def compile_ptx(variant: KernelVariant, capability: int) -> str:
    """The PTX of ``variant`` for ``sm_<capability>``, with the runtime's alignment attributes."""
    kernel = variant.kernel
    element = getattr(tl, variant.dtype)
    state_element = getattr(tl, variant.state_dtype or variant.dtype)
    constexprs = dict(
        variant.flags, BLOCK_SIZE=variant.config.block_size, ELEMENT=element, STATE_ELEMENT=state_element,
        ROUNDING=variant.rounding,
    )
    if "STEP_ELEMENT" in kernel.arg_names:
        constexprs["STEP_ELEMENT"] = tl.float32  # the step counts' dtype (float64 only under a float64 default dtype)
    signature, attrs = {}, {}
    for index, param in enumerate(kernel.params):
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            continue
        signature[param.name] = _argument_type(param.name)
        attrs[(index,)] = DIVISIBLE_BY_16
    source = ASTSource(
        kernel,
        signature,
        constexprs={(kernel.arg_names.index(k),): v for k, v in constexprs.items()},
        attrs=attrs,
    )
    compiled = triton.compile(
        source,
        target=GPUTarget("cuda", capability, 32),
        options={"num_warps": variant.config.num_warps, "enable_fp_fusion": False},
    )
    return compiled.asm["ptx"]


# --- reading the PTX ---------------------------------------------------------------
_INSTRUCTION = re.compile(r"^\s*(?:@!?%\w+\s+)?(?P<opcode>[a-z][\w.]*)\s+(?P<operands>[^;]*);", re.M)
_REGISTER = re.compile(r"%[a-z]+\d+")
_KERNEL_PARAM = re.compile(r"\[\s*\w+_param_(\d+)\s*\]")
_VECTOR = re.compile(r"\.v(\d)")
_BITS = re.compile(r"\.[bsuf](\d+)$")


@dataclass(frozen=True)
class GlobalAccess:
    """One ``ld.global``/``st.global`` and the kernel arguments its address comes from."""

    instruction: str
    width_bytes: int
    arguments: frozenset[int]


def global_accesses(ptx: str) -> list[GlobalAccess]:
    """Global loads and stores, each traced back to the kernel parameters of its address.

    Registers are followed through every instruction that writes one (the first
    operand; stores and branches write none) from ``ld.param`` of a kernel
    parameter; PTX parameter ``i`` is the kernel's ``i``-th non-constexpr argument.
    """
    origins: dict[str, frozenset[int]] = {}
    accesses = []
    for match in _INSTRUCTION.finditer(ptx):
        opcode, operands = match["opcode"], match["operands"]
        if opcode.startswith(("ld.global", "st.global")):
            address = re.search(r"\[\s*(%\w+)", operands)[1]
            vector = _VECTOR.search(opcode)
            width = (int(vector[1]) if vector else 1) * int(_BITS.search(opcode)[1]) // 8
            accesses.append(GlobalAccess(match[0].strip(), width, origins.get(address, frozenset())))
        if opcode.startswith(("st.", "bra", "ret")):
            continue
        registers = _REGISTER.findall(operands)
        if opcode.startswith("ld.global"):
            continue  # loaded values are data, not addresses
        parameter = _KERNEL_PARAM.search(operands)
        if opcode.startswith("ld.param") and parameter and registers:
            origins[registers[0]] = frozenset([int(parameter[1])])
        elif registers:
            sources = [origins.get(r, frozenset()) for r in registers[1:]]
            origins[registers[0]] = frozenset().union(*sources)
    return accesses


def uses_local_memory(ptx: str) -> bool:
    """Local memory in PTX means a stack frame: spilled or dynamically indexed registers."""
    return re.search(r"\.local\b|\b(?:ld|st)\.local", ptx) is not None


_FLOAT_ARITHMETIC = re.compile(r"^\s*(?:@!?%\w+\s+)?((?:add|sub|mul|fma|div|sqrt|rcp)(?:\.[a-z0-9]+)*\.f(?:32|64))\s", re.M)


def float_arithmetic(ptx: str) -> list[str]:
    """Opcodes of the floating-point adds, subtracts, multiplies, fmas, divisions, square
    roots and reciprocals, e.g. ``fma.rn.f32``."""
    return _FLOAT_ARITHMETIC.findall(ptx)


def rounds_like_torch(opcode: str) -> bool:
    """IEEE round-to-nearest, no flush-to-zero, no approximation: what torch computes."""
    parts = opcode.split(".")
    return "rn" in parts and not {"ftz", "approx", "full"} & set(parts)
