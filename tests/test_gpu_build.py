"""Every kernel variant builds for the GPUs users run, with the memory accesses tuning relies on.

No GPU needed: ``triton.compile`` targets sm_90 (H100) for every variant (each
combination of boolean constexprs, each storage dtype) and sm_80 (A100) for the
variant with every switch on, per kernel and dtype. The interpreter proves the
arithmetic; this proves the build. Pointers and ``n_elements`` get the
16-divisibility the runtime gives flat-buffer segments (16-element-aligned
starts, lengths a multiple of 16), so every access to a storage buffer must be
one 16-byte vector, and no variant may touch local memory (a register spill).
"""

import pytest

from ptx_build import (
    FLOAT32_SCALAR_POINTERS,
    compile_ptx,
    global_accesses,
    kernel_variants,
    uses_local_memory,
)

VARIANTS = kernel_variants()
SM80_SAMPLE = [v for v in VARIANTS if all(on for _, on in v.flags)]
BUILDS = [(v, 90) for v in VARIANTS] + [(v, 80) for v in SM80_SAMPLE]


@pytest.fixture(scope="module", autouse=True)
def fresh_triton_cache(tmp_path_factory):
    """Compile every variant from scratch: nothing cached across runs or from other sessions."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRITON_CACHE_DIR", str(tmp_path_factory.mktemp("triton_cache")))
        yield


def test_every_kernel_module_is_covered():
    kernels = {(v.module, v.kernel.__name__) for v in VARIANTS}
    assert ("sgd", "_sgd_kernel") in kernels
    assert len(VARIANTS) >= 2**5 * 4  # SGD alone: five switches, four dtypes


@pytest.mark.parametrize("variant,capability", BUILDS, ids=[f"{v.id}-sm{c}" for v, c in BUILDS])
def test_variant_builds_with_16_byte_accesses_and_no_spills(variant, capability):
    ptx = compile_ptx(variant, capability)
    assert not uses_local_memory(ptx), f"{variant.id} uses local memory on sm_{capability}"
    arguments = [p.name for p in variant.kernel.params if not p.is_constexpr]
    accesses = global_accesses(ptx)
    assert any("ld.global" in a.instruction for a in accesses), f"{variant.id} loads nothing"
    assert any("st.global" in a.instruction for a in accesses), f"{variant.id} stores nothing"
    for access in accesses:
        names = {arguments[i] for i in access.arguments if i < len(arguments)}
        assert names, f"{variant.id}: address of {access.instruction!r} comes from no argument"
        if names <= FLOAT32_SCALAR_POINTERS:
            continue
        assert access.width_bytes == 16, (
            f"{variant.id} on sm_{capability}: {access.instruction!r} moves "
            f"{access.width_bytes} bytes of {sorted(names)}, not one 16-byte vector"
        )


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


def test_ptx_reader_traces_widths_and_arguments():
    accesses = global_accesses(SYNTHETIC_PTX)
    assert [(a.width_bytes, set(a.arguments)) for a in accesses] == [(16, {0}), (8, {1}), (16, {0})]
    assert not uses_local_memory(SYNTHETIC_PTX)
    assert uses_local_memory(SYNTHETIC_PTX + "\tst.local.b32 [%rd2], %r1;\n")
    assert uses_local_memory(".local .align 16 .b8 __local_depot0[32];")
