# Two commands do all set-up on a fresh machine (they create .venv on first use):
#   make run    a simulated full-face treatment session on the in-process simulators (virtual time)
#   make test   ruff, mypy --strict and the whole pytest suite (what .ci/run calls)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup sysdeps run test lint bench campaign campaign-doc live-check realclock-check diagram clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "plasmactl needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/plasmactl run examples/plans/full-face.toml --out out/full-face --overwrite

# mbpoll (libmodbus) is the independent Modbus peer the wire tests talk to the served simulators with.
sysdeps:
	@command -v mbpoll >/dev/null 2>&1 || { \
	  echo "installing mbpoll (Debian package) for the wire tests"; \
	  (apt-get install -y -qq mbpoll >/dev/null 2>&1 || \
	   (apt-get update -qq && apt-get install -y -qq mbpoll)) ; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# tests/test_hil_suite.py runs hil/ itself, on the served TCP and RTU rigs, and reads its reports.
test: lint sysdeps
	$(BIN)/pytest -q --durations=20 tests

# The generative fault campaign's long profile: 10,000 random multi-fault sessions, a fresh seed each time
# (SESSIONS=..., SEED=... and TRANSPORT=inprocess,tcp to change it); counts by invariant, exit 1 on any.
SESSIONS ?= 10000
TRANSPORT ?= inprocess
campaign: $(STAMP)
	$(BIN)/python -m plasmactl.random_campaign --sessions $(SESSIONS) --transport $(TRANSPORT) $(if $(SEED),--seed $(SEED),)

# The live controller's property test, long profile: 100,000 hypothesis steps with a fresh seed (printed;
# SEED=... replays it, STEPS=... changes the count).
STEPS ?= 100000
live-check: $(STAMP)
	PLASMACTL_LIVE_STEPS=$(STEPS) $(if $(SEED),PLASMACTL_LIVE_SEED=$(SEED),) $(BIN)/pytest -q -s -p no:cacheprovider tests/test_live_controller.py

# Every example plan on the served TCP and RTU rigs on the real clock, 3 runs each, two CPU-bound processes
# beside it (the full-face plan is 25 minutes a run: about 2.5 hours in all).
realclock-check: $(STAMP) sysdeps
	PLASMACTL_REALCLOCK_RUNS=3 PLASMACTL_REALCLOCK_PLANS=all $(BIN)/pytest -q -p no:cacheprovider tests/test_examples_realclock.py

# Every fault kind at every moment of the pulse cycle, in-process and over Modbus TCP: docs/campaign.md.
campaign-doc: $(STAMP)
	$(BIN)/plasmactl campaign --out out/campaign && cp out/campaign/campaign.md docs/campaign.md

bench: $(STAMP) sysdeps
	$(BIN)/python benchmarks/full_face_virtual.py
	$(BIN)/python benchmarks/full_face_physics.py
	$(BIN)/python benchmarks/driver_status_read.py
	$(BIN)/python benchmarks/cooling_latency_tcp.py
	$(BIN)/python benchmarks/estop_reaction.py
	$(BIN)/python benchmarks/rtu_cycle.py

diagram: $(STAMP)
	$(BIN)/plasmactl diagram --write docs/state-machine.md

clean:
	rm -rf $(VENV) out .mypy_cache .ruff_cache .pytest_cache
