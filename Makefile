# The README's commands. Both create .venv when it is missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Installed only when .venv has no torch yet: the CPU build on this kind of machine. A GPU
# user installs a CUDA build into .venv first (see README) and it is kept.
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: demo test bench setup opencl clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

# OpenMM's OpenCL platform on CPU-only machines runs through PoCL; install it when we can
# (root with apt), otherwise the OpenCL tests skip and say why.
opencl:
	@if [ ! -e /etc/OpenCL/vendors/pocl.icd ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ocl-icd-libopencl1 pocl-opencl-icd >/dev/null) \
		|| echo "note: could not install PoCL; OpenCL tests will be skipped"; \
	fi

demo: $(STAMP) opencl
	$(BIN)/langevin-md demo

# Two passes (tests/conftest.py says which tests are `serial` and why): first every other test
# on $(TEST_WORKERS) pytest-xdist workers with one thread each, one test file per worker so
# that a module's fixtures are built once, handed out in the order tests/conftest.py gives
# (its LONG_FIRST files first, so that both workers finish together); then the serial ones
# (thread counts from idle CPUs, wall-clock bounds, SIGKILL timing, a Dask cluster, OpenCL)
# with nothing beside them. Both passes always run and print pytest's summary; the target
# fails if either failed (exit 5, "no tests collected", counts as passing: a subset in TESTS
# may hold no serial test). TEST_WORKERS=1 runs the first pass without xdist too.
TESTS        ?= tests
TEST_WORKERS ?= auto
PYTEST_PARALLEL = $(if $(filter 1,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: $(STAMP) opencl
	@$(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not serial" $(TESTS); parallel=$$?; \
	$(BIN)/python -m pytest -q -p no:xdist -m serial $(TESTS); serial=$$?; \
	{ test $$parallel -eq 0 || test $$parallel -eq 5; } && { test $$serial -eq 0 || test $$serial -eq 5; }

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
