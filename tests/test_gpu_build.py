"""Every kernel variant builds for the GPUs users run, with the memory accesses tuning relies on.

No GPU needed: ``triton.compile`` builds every combination of each kernel's boolean
constexprs for sm_80 (A100) or sm_90 (H100) in one storage dtype, chosen so that
every dtype and both architectures meet every value of every flag (see
``kernel_builds``; ``TRITONOPT_GPU_BUILD_ALL=1`` builds every combination in every
dtype, which takes minutes once kernels have six or seven switches). The interpreter proves the
arithmetic; this proves the build. Storage addresses come from the tensor table;
on the vector path the kernel tells the compiler they are 16-byte aligned and the
block's count a multiple of 16, so every buffer that path reads or writes must
move in 16-byte vectors (counted per buffer from the kernel's switches), the
masked path in single elements, and no variant may touch local memory (a spill).
"""

import os

import pytest

from ptx_build import (
    STORAGE_DTYPES,
    compile_ptx,
    float_arithmetic,
    global_accesses,
    kernel_builds,
    rounding_builds,
    rounds_like_torch,
    uses_local_memory,
)

BUILDS = kernel_builds(every_dtype=os.environ.get("TRITONOPT_GPU_BUILD_ALL") == "1")


@pytest.fixture(scope="module", autouse=True)
def fresh_triton_cache(tmp_path_factory):
    """Compile every variant from scratch: nothing cached across runs or from other sessions."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_CACHE_DIR", str(tmp_path_factory.mktemp("triton_cache")))
        yield


def test_builds_cover_every_kernel_flag_dtype_and_architecture():
    kernels = {(v.module, v.kernel.__name__) for v, _ in BUILDS}
    assert ("sgd", "_sgd_kernel") in kernels
    for module, name in kernels:
        builds = [(v, c) for v, c in BUILDS if (v.module, v.kernel.__name__) == (module, name)]
        switches = [flag for flag, _ in builds[0][0].flags]
        assert len({v.flags for v, _ in builds}) == 2 ** len(switches)
        for flag_index, _ in enumerate(switches):
            for value in (False, True):
                met = {(v.dtype, c) for v, c in builds if v.flags[flag_index][1] == value}
                assert {d for d, _ in met} == set(STORAGE_DTYPES), (name, switches[flag_index], value)
                assert {c for _, c in met} >= {90} and (
                    {c for _, c in met} >= {80} or os.environ.get("TRITONOPT_GPU_BUILD_ALL") == "1"
                )


@pytest.mark.parametrize("variant,capability", BUILDS, ids=[f"{v.id}-sm{c}" for v, c in BUILDS])
def test_variant_builds_with_16_byte_accesses_and_no_spills(variant, capability):
    ptx = compile_ptx(variant, capability)
    assert not uses_local_memory(ptx), f"{variant.id} uses local memory on sm_{capability}"
    # Arithmetic as torch computes it: every a + alpha * b one fma.rn (one rounding, as the
    # interpreter of triton 3.9 but not 3.6 computes tl.fma), IEEE division and square root.
    arithmetic = float_arithmetic(ptx)
    compute = "f64" if variant.dtype == "float64" else "f32"
    assert f"fma.rn.{compute}" in arithmetic, f"{variant.id}: no fma.rn.{compute}"
    assert all(rounds_like_torch(opcode) for opcode in arithmetic), f"{variant.id}: {sorted(set(arithmetic))}"
    # The vector path moves every buffer it reads or writes in 16-byte vectors; nothing
    # moves more, and the masked path (unaligned tensors, tails) moves single elements.
    accesses = global_accesses(ptx)
    reads, writes = buffers_moved(variant)
    per_thread = variant.config.block_size // (32 * variant.config.num_warps) * STORAGE_DTYPES[variant.dtype]
    assert per_thread >= 16, f"{variant.id}: {per_thread} bytes per thread and buffer cannot fill a vector"
    vectors = per_thread // 16
    loads = [a for a in accesses if "ld.global" in a.instruction and a.width_bytes == 16]
    stores = [a for a in accesses if "st.global" in a.instruction and a.width_bytes == 16]
    assert (len(loads), len(stores)) == (reads * vectors, writes * vectors), (
        f"{variant.id} on sm_{capability}: {len(loads)} 16-byte loads and {len(stores)} stores, "
        f"expected {reads} and {writes} buffers x {vectors} vectors"
    )
    assert all(a.width_bytes <= 16 for a in accesses)


ROUNDING = rounding_builds()


@pytest.mark.parametrize("variant,capability", ROUNDING, ids=[f"{v.id}-sm{c}" for v, c in ROUNDING])
def test_rounding_and_state_dtype_variants_build_with_16_byte_accesses(variant, capability):
    """Stochastic and Kahan rounding and state in another dtype build for sm_90 without
    spills, with torch's rounding of float arithmetic, and move every buffer in 16-byte
    vectors on the vector path (state buffers at their own width)."""
    ptx = compile_ptx(variant, capability)
    assert not uses_local_memory(ptx), f"{variant.id} uses local memory"
    assert all(rounds_like_torch(opcode) for opcode in float_arithmetic(ptx)), variant.id
    per_thread = variant.config.block_size // (32 * variant.config.num_warps)
    param_vectors = per_thread * STORAGE_DTYPES[variant.dtype] // 16
    state_vectors = per_thread * STORAGE_DTYPES[variant.state_dtype or variant.dtype] // 16
    reads, writes = buffers_moved(variant)
    state_buffers = 1 if variant.kernel.__name__ == "_sgd_kernel" else 3  # every switch is on
    kahan = variant.rounding == 2
    param_reads, param_writes = reads - state_buffers + kahan, writes - state_buffers + kahan
    accesses = global_accesses(ptx)
    loads = [a for a in accesses if "ld.global" in a.instruction and a.width_bytes == 16]
    stores = [a for a in accesses if "st.global" in a.instruction and a.width_bytes == 16]
    expected = (
        param_reads * param_vectors + state_buffers * state_vectors,
        param_writes * param_vectors + state_buffers * state_vectors,
    )
    assert (len(loads), len(stores)) == expected, f"{variant.id}: {len(loads)} loads, {len(stores)} stores"


def buffers_moved(variant) -> tuple[int, int]:
    """(buffers read, buffers written) by one block, from the kernel's switches."""
    flags = dict(variant.flags)
    grad_written = flags["HAS_GRAD_SCALE"]  # the unscaled gradient is stored back
    if variant.kernel.__name__ == "_sgd_kernel":
        momentum = flags["HAS_MOMENTUM"]
        return 2 + momentum, 1 + momentum + grad_written
    assert variant.kernel.__name__ == "_adam_kernel", variant.kernel.__name__
    amsgrad = flags["AMSGRAD"]
    return 4 + amsgrad, 3 + amsgrad + grad_written


SYNTHETIC_PTX = """
	ld.param.b64 	%rd7, [k_param_0];
	ld.param.b64 	%rd8, [k_param_1];
	mov.u32 	%r41, %ctaid.x;
	mul.wide.u32 	%rd10, %r41, 1024;
	add.s64 	%rd1, %rd7, %rd10;
	add.s64 	%rd3, %rd8, %rd10;
	@%p1 ld.global.v4.b32 { %r1, %r2, %r3, %r4 }, [ %rd1 + 0 ];
	@%p1 ld.global.v2.b32 { %r5, %r6 }, [ %rd3 + 0 ];
	@%p1 st.global.v2.b64 [ %rd1 + 0 ], { %rd4, %rd5 };
"""


def test_arithmetic_reader_finds_float_opcodes_and_their_rounding():
    ptx = "\tfma.rn.f32 \t%r5, %r1, %r2, %r3;\n\t@%p1 div.full.f32 %r6, %r5, %r4;\n\tmul.rn.f64 %rd1, %rd2, %rd3;\n"
    ptx += "\tadd.s64 %rd4, %rd5, 16;\n\tsqrt.approx.ftz.f32 %r7, %r6;\n"
    assert float_arithmetic(ptx) == ["fma.rn.f32", "div.full.f32", "mul.rn.f64", "sqrt.approx.ftz.f32"]
    assert [rounds_like_torch(o) for o in float_arithmetic(ptx)] == [True, False, True, False]


def test_ptx_reader_traces_widths_and_arguments():
    accesses = global_accesses(SYNTHETIC_PTX)
    assert [(a.width_bytes, set(a.arguments)) for a in accesses] == [(16, {0}), (8, {1}), (16, {0})]
    assert not uses_local_memory(SYNTHETIC_PTX)
    assert uses_local_memory(SYNTHETIC_PTX + "\tst.local.b32 [%rd2], %r1;\n")
    assert uses_local_memory(".local .align 16 .b8 __local_depot0[32];")
