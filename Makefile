# Each target sets up what it needs in .venv from nothing.
# CPU machines take the local CPU wheel of torch; on a GPU machine keep your CUDA
# build with `make test TORCH=torch` (or any requirement string).
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python

# A second venv with triton 3.6, the GPU machine's version, for the kernel tests and GPU builds.
VENV36 := .venv-triton36
TRITON36_TESTS := tests/test_gpu_build.py tests/test_kernels.py tests/test_adam_kernels.py tests/test_interpreter_fma.py \
	tests/test_negation.py tests/test_capturable.py

.PHONY: install demo test test-triton36 test-thorough bench gpu-check mutation clean

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q ".[test]"
	touch $@

# Tests run against the installed package (kernels/ installed as tritonopt.kernels).
install: $(VENV)/.ready
	$(PY) -m pip install -q --no-deps --force-reinstall .

demo: install
	# from inside .venv, so the installed package is imported, not the source tree
	cd $(VENV) && bin/python -m tritonopt.demo

test: install
	$(VENV)/bin/pytest -q -p no:cacheprovider
	$(MAKE) test-triton36

$(VENV36)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV36)
	$(VENV36)/bin/python -m pip install -q "$(TORCH)" triton==3.6.0 numpy "pytest>=8" "hypothesis>=6.100"
	touch $@

# The kernel tests (interpreter) and every kernel's sm_80/sm_90 build under triton 3.6.
test-triton36: $(VENV36)/.ready
	$(VENV36)/bin/python -m pip install -q --no-deps --force-reinstall .
	$(VENV36)/bin/pytest -q -p no:cacheprovider $(TRITON36_TESTS)

test-thorough: install
	HYPOTHESIS_PROFILE=thorough $(VENV)/bin/pytest -q -p no:cacheprovider

# pytest-benchmark suite over the quick preset (bench/ is not in testpaths: make test skips it)
bench: install
	$(PY) -m pip install -q ".[bench]"
	$(VENV)/bin/pytest bench -q -p no:cacheprovider --benchmark-columns=min,median,max,rounds

# On a GPU machine without network, with the python that has torch with CUDA (nothing
# from .venv, no registry): tests on CUDA tensors, the launch sweep, then the GPU
# benchmark, table last, under 8 minutes; RESULTS names the output folder.
GPU_PYTHON ?= python3
RESULTS ?= bench/results/gpu-check
gpu-check:
	PYTHON=$(GPU_PYTHON) bench/gpu_check.sh $(RESULTS)

# Mutation score of kernels/ with cosmic-ray, in a scratch copy of the tree; writes
# tests/MUTATION-RESULTS.txt. MUTATION_SAMPLE=N keeps every Nth mutant (the whole set
# takes about an hour on 2 cores); a config argument picks other files:
# make mutation MUTATION_CONFIG=tests/mutation/engine.toml
MUTATION_CONFIG ?= tests/mutation/cosmic-ray.toml
mutation: install
	$(PY) -m pip install -q ".[mutation]"
	PYTHON=$(PY) tests/mutation/run.sh $(MUTATION_CONFIG)

clean:
	rm -rf $(VENV) $(VENV36) build *.egg-info .hypothesis
