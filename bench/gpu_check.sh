#!/usr/bin/env bash
# The GPU check, in one command and about 5 minutes: the test suite on CUDA tensors
# (compiled kernels), then the GPU benchmark, whose table is printed last.
#
#   bench/gpu_check.sh RESULTS_DIR [extra python -m tritonopt.bench options]
#
# Writes RESULTS_DIR/tests.log, bench.log, results.json and chart.png. Exits 2 when
# torch sees no CUDA device. `--device cpu` skips the tests and runs the benchmark
# part on CPU, which exercises this script's plumbing without a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
    echo "usage: bench/gpu_check.sh RESULTS_DIR [benchmark options]" >&2
    exit 64
fi
out=$(realpath -m "$1")
shift
venv=${VENV:-.venv}
mkdir -p "$out"

tests_status=0
if [[ " $* " != *" --device cpu "* ]]; then
    if ! "$venv/bin/python" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
        echo "gpu_check: torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') sees no CUDA device; nothing was run" >&2
        exit 2
    fi
    TRITONOPT_COMPILED=1 TRITONOPT_TEST_DEVICE=cuda timeout 170 \
        "$venv/bin/pytest" -q -p no:cacheprovider -x tests 2>&1 | tee "$out/tests.log"
    tests_status=${PIPESTATUS[0]}
fi

# From inside the venv, so the installed package runs, not the source tree.
(cd "$venv" && timeout 120 bin/python -m tritonopt.bench --quick --repeats 20 --out "$out" "$@") \
    > "$out/bench.log" 2>&1
bench_status=$?
# The table last: the benchmark reprints it after its per-case progress.
awk '/^\$ python -m tritonopt.bench/ {table = ""} {table = table $0 "\n"} END {printf "%s", table}' "$out/bench.log"
echo "gpu_check: tests exit ${tests_status}, benchmark exit ${bench_status}; results in $out"
[[ $tests_status -eq 0 && $bench_status -eq 0 ]]
