# The two commands of the README. Each creates .venv on a fresh machine and installs into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
CONSTRAINTS := constraints.txt
ARGS ?=
# torch runs the REAL torch systems (LLMStation, later TrainCheck); constraints.txt pins the CPU wheel.
# `make run EXTRAS=` installs without it (those systems are then reported as unavailable).
EXTRAS ?= torch
comma := ,
# the datasets: $SYSLAB_DATA if set, else the shared folder beside the checkout when there is one
SYSLAB_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data))
export SYSLAB_DATA

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml $(CONSTRAINTS)
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".$(if $(EXTRAS),[$(EXTRAS)])"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install --quiet -c $(CONSTRAINTS) -e ".[dev$(if $(EXTRAS),$(comma)$(EXTRAS))]"
	touch $@

## make run: every system's quick reproduction -> report/index.html, report/results.json
run: $(VENV)/.installed
	$(BIN)/syslab reproduce --out report $(ARGS)

## make test: the whole test suite. Unit and property tests run in two processes; so do the reproductions and
## negative controls of the systems that may share the cores (deterministic simulations, as `syslab reproduce`
## runs them), each system's tests in one process; then the timed reproductions and real-process tests run one
## at a time, so nothing timed shares the two cores.
## (pytest exits 5 when a selection holds no test of a phase, e.g. `make test ARGS=tests/core`.)
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow" -n 2 $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m "slow and shared_cores" -n 2 --dist loadgroup $(ARGS) || [ $$? -eq 5 ]
	$(BIN)/python -m pytest -m "slow and not shared_cores" $(ARGS) || [ $$? -eq 5 ]

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) report
