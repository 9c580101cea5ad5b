# Two commands do all set-up on a fresh machine (they create .venv on first use):
#   make run    a simulated full-face treatment session on the in-process simulators (virtual time)
#   make test   ruff, mypy --strict and the whole pytest suite (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test lint bench diagram clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "plasmactl needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/plasmactl run examples/plans/full-face.toml --out out/full-face --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q tests hil

bench: $(STAMP)
	$(BIN)/python benchmarks/full_face_virtual.py

diagram: $(STAMP)
	$(BIN)/plasmactl diagram --write docs/state-machine.md

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
