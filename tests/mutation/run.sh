#!/usr/bin/env bash
# Mutation score of the files named in a cosmic-ray config (default: the kernels).
#
# cosmic-ray mutates the source files on disk, so it runs in a scratch copy of the
# working tree, never in the tree itself (others may be importing it). In the copy,
# tritonopt/kernels links to kernels/ so that `import tritonopt.kernels` finds the
# mutated copy ahead of an editable install. Writes the score and the surviving
# mutants to tests/MUTATION-RESULTS.txt (or $MUTATION_OUT). MUTATION_SAMPLE=N keeps
# every Nth mutant (in source order) when the whole set would take too long.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
config=$(realpath "${1:-$root/tests/mutation/cosmic-ray.toml}")
out=$(realpath -m "${MUTATION_OUT:-$root/tests/MUTATION-RESULTS.txt}")
python=$(realpath -s "${PYTHON:-$root/.venv/bin/python}")
bin=$(dirname "$python")
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cd "$root"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$scratch"
ln -s ../kernels "$scratch/tritonopt/kernels"
cd "$scratch"
export PATH="$bin:$PATH"
cosmic-ray init "$config" session.sqlite
python "$root/tests/mutation/sample.py" session.sqlite "${MUTATION_SAMPLE:-1}"
cosmic-ray exec "$config" session.sqlite
{
    echo "cosmic-ray over: $(python -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["cosmic-ray"]["module-path"]))' "$config")"
    echo "sample: every ${MUTATION_SAMPLE:-1}th mutant in source order"
    echo "at commit $(git -C "$root" rev-parse --short HEAD) on $(date -u +%Y-%m-%dT%H:%MZ)"
    cr-report --show-diff --surviving-only session.sqlite
} > "$out"
tail -n 3 "$out"
