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

test: $(STAMP) opencl
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
