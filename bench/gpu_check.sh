#!/usr/bin/env bash
# The GPU check in one command, under 8 minutes, on a machine without network: install
# tritonopt with the machine's own python (no index, no dependencies: that python
# already has torch with CUDA, triton, pytest and hypothesis), run the test suite on
# CUDA tensors (compiled kernels), sweep the launch configurations, run the GPU
# benchmark, and print its table last.
#
#   bench/gpu_check.sh RESULTS_DIR              # PYTHON=... picks the python (default python3)
#   bench/gpu_check.sh --dry-run RESULTS_DIR    # the same phases on CPU, one tiny case each (~25 s)
#
# Writes RESULTS_DIR/environment.txt, install.log, tests.log, sweep.log, sweep.json,
# bench.log, results.json, chart.png and summary.txt. The package is installed into a
# temporary folder, removed at the end, which is also every phase's working directory.
# Each phase runs under `timeout` (SIGINT first, so pytest still prints its summary) and
# writes what it has; the next phase runs anyway. Exits 2 when the python has no torch
# or (without --dry-run) torch sees no CUDA device; otherwise nonzero if any phase failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dry_run=0
if [[ ${1:-} == --dry-run ]]; then
    dry_run=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: bench/gpu_check.sh [--dry-run] RESULTS_DIR" >&2
    exit 64
fi
out=$(realpath -m "$1")
py=${PYTHON:-python3}
mkdir -p "$out"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Seconds per phase: 30 + 200 + 90 + 130, plus 5 s of grace each, stays under 8 minutes.
INSTALL_S=${GPU_CHECK_INSTALL_S:-30}
TESTS_S=${GPU_CHECK_TESTS_S:-200}
SWEEP_S=${GPU_CHECK_SWEEP_S:-90}
BENCH_S=${GPU_CHECK_BENCH_S:-130}
guard() {  # guard SECONDS command...: interrupt, then kill 5 s later
    local seconds=$1
    shift
    timeout -s INT -k 5 "$seconds" "$@"
}

# One python start: the environment record, and whether there is anything to run.
"$py" - "$dry_run" > "$out/environment.txt" 2>&1 <<'PYTHON'
import platform, sys
try:
    import torch, triton
except ImportError as error:
    print(f"{sys.executable}: {error}")
    sys.exit(3)
print("python:", sys.executable, platform.python_version())
print("torch:", torch.__version__, "cuda", torch.version.cuda, "; triton:", triton.__version__)
for i in range(torch.cuda.device_count()):
    print(f"cuda:{i}:", torch.cuda.get_device_name(i), "sm_%d%d" % torch.cuda.get_device_capability(i))
if sys.argv[1] == "0" and not torch.cuda.is_available():
    print(f"torch {torch.__version__} sees no CUDA device")
    sys.exit(4)
PYTHON
case $? in
    0) ;;
    4) echo "gpu_check: $(tail -n 1 "$out/environment.txt") in $py; nothing was run" >&2; exit 2 ;;
    *) echo "gpu_check: $py cannot import torch and triton; set PYTHON to the python that has them" >&2
       cat "$out/environment.txt" >&2; exit 2 ;;
esac
{
    echo "date: $(date -u +%FT%TZ)"
    echo "commit: $(git -C "$repo" rev-parse HEAD 2>/dev/null) ($(git -C "$repo" status --porcelain 2>/dev/null | wc -l) changed files)"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
} >> "$out/environment.txt" 2>&1
cat "$out/environment.txt"

# 1. Install: a wheel built here (setuptools from the python itself), into a temporary
# folder. The python's own site-packages stay as they were.
work=$(mktemp -d "${TMPDIR:-/tmp}/tritonopt-gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
site="$work/site"
start=$SECONDS
if guard "$INSTALL_S" "$py" -m pip install --no-index --no-deps --no-build-isolation --target "$site" "$repo" \
    > "$out/install.log" 2>&1; then
    install="pip"
else
    # No pip or no setuptools: the package is pure Python, so its layout is copied instead.
    echo "pip failed (above); copying the package layout instead" >> "$out/install.log"
    rm -rf "$site" && mkdir -p "$site" && cp -r "$repo/tritonopt" "$site/" && cp -r "$repo/kernels" "$site/tritonopt/kernels"
    install="copied"
fi
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
# Every phase runs from the temporary folder, so the source tree's tritonopt/ (without
# kernels) is never imported, and nothing but results lands in RESULTS_DIR.
cd "$work" || exit 1
if ! "$py" -c "import sys, tritonopt.kernels; sys.exit(not tritonopt.__file__.startswith('$site'))" >> "$out/install.log" 2>&1; then
    install="failed"
fi
install_s=$((SECONDS - start))

# 2. The test suite on CUDA tensors with compiled kernels (CI builds every kernel variant's
# PTX for sm_80/sm_90 under this triton already: test_gpu_build.py is left to it).
if [[ $dry_run -eq 1 ]]; then
    case="sgd-momentum=0.9-dampening=0.0-nesterov=True-first_step=False-weight_decay=0.01-maximize=False-torch.float32-triton"
    tests=(-p no:cacheprovider -q "$repo/tests/test_kernels.py::test_update_matches_torch[$case]")
    test_env=(TRITONOPT_TEST_DEVICE=cpu)
else
    # The kernels first (an interrupted run keeps the most telling results), then the rest.
    first=(test_kernels.py test_capturable.py test_negation.py test_amp.py test_state_machine.py test_launch.py)
    tests=(-p no:cacheprovider -q -rfE --durations=10)
    for name in "${first[@]}"; do
        tests+=("$repo/tests/$name")
    done
    for path in "$repo"/tests/test_*.py; do
        name=$(basename "$path")
        [[ " ${first[*]} test_gpu_build.py " == *" $name "* ]] || tests+=("$path")
    done
    test_env=(TRITONOPT_COMPILED=1 TRITONOPT_TEST_DEVICE=cuda)
fi
echo "== tests ($TESTS_S s at most)"
guard "$TESTS_S" env ${test_env[@]+"${test_env[@]}"} "$py" -m pytest "${tests[@]}" 2>&1 | tee "$out/tests.log" | tail -n 25
tests_status=${PIPESTATUS[0]}
tests_s=$((SECONDS - start - install_s))

# 3. The launch-configuration sweep (sweep.json holds the proposed LAUNCH_TABLE entry).
if [[ $dry_run -eq 1 ]]; then
    sweep=(--device cpu --tiny --repeats 2)
    sweep_env=(TRITON_INTERPRET=1)  # CPU tensors run the kernels only in the interpreter
else
    sweep=(--device cuda)
    sweep_env=()
fi
echo "== launch sweep ($SWEEP_S s at most)"
guard "$SWEEP_S" env ${sweep_env[@]+"${sweep_env[@]}"} "$py" -m tritonopt.bench.sweep "${sweep[@]}" --out "$out/sweep.json" \
    2>&1 | tee "$out/sweep.log" | tail -n 4
sweep_status=${PIPESTATUS[0]}
sweep_s=$((SECONDS - start - install_s - tests_s))

# 4. The benchmark; its table is reprinted below, last.
if [[ $dry_run -eq 1 ]]; then
    bench=(--device cpu --tiny --repeats 3)
else
    bench=(--device cuda --quick --repeats 20 --no-compile)  # compiling steps would take minutes
fi
echo "== benchmark ($BENCH_S s at most)"
guard "$BENCH_S" "$py" -m tritonopt.bench "${bench[@]}" --out "$out" > "$out/bench.log" 2>&1
bench_status=$?
bench_s=$((SECONDS - start - install_s - tests_s - sweep_s))

summary="gpu_check: install ${install} (${install_s} s), tests exit ${tests_status} (${tests_s} s), sweep exit ${sweep_status} (${sweep_s} s), benchmark exit ${bench_status} (${bench_s} s); results in $out"
echo "$summary" > "$out/summary.txt"
# The table last: the benchmark reprints it after its per-case progress (a run cut short
# leaves its progress, which is printed instead).
awk '/^\$ python -m tritonopt.bench/ {table = ""} {table = table $0 "\n"} END {printf "%s", table}' "$out/bench.log"
echo "$summary"
[[ $install != failed && $tests_status -eq 0 && $sweep_status -eq 0 && $bench_status -eq 0 ]]
