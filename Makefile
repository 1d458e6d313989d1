# nightshift: two commands on a fresh machine.
#   make demo   install what is missing, start the local stack, run a night of Alert Production
#               (`nightshift ap run-night`: every service as a process, visits on the cadence, alerts), stop the stack
#   make test   install what is missing, run make check, start the local stack, run the whole test suite, stop the stack
#   make tour   the library tour (events, butler, APDB, pipelines) against the local stack
#   make check  ruff (lint, whole repository) and mypy --strict (libs/nightshift, libs/nightshift_dev, services); no servers needed
#   make tools  build the Kubernetes chart checkers (helm, nightshift-kubecheck) into .cache/bin with Go
# Both are idempotent: a second run reuses the virtual environment, jars and server data.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
NIGHTSHIFT := $(VENV)/bin/nightshift
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
NIGHT_ARGS ?=

.PHONY: browser check demo tour test tools setup system venv stack-up stack-down clean-stack

demo: setup
	@$(NIGHTSHIFT) dev up
	@status=0; $(NIGHTSHIFT) --log-level WARNING ap run-night $(NIGHT_ARGS) || status=$$?; $(NIGHTSHIFT) dev down; exit $$status

tour: setup
	@$(NIGHTSHIFT) dev up
	@status=0; $(NIGHTSHIFT) --log-level WARNING demo || status=$$?; $(NIGHTSHIFT) dev down; exit $$status

# check first: a lint or type error fails the run (and .ci/run) before any server starts
test: setup browser check tools
	@$(NIGHTSHIFT) dev up
	@status=0; $(PY) -m pytest $(PYTEST_ARGS) || status=$$?; $(NIGHTSHIFT) dev down; exit $$status

setup: system venv

check: venv
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy

system:
	@bash deploy/bootstrap.sh

tools:
	@bash deploy/tools.sh

# headless Chromium from Debian's packages: the load-test report is checked in a real browser (Playwright drives it)
browser:
	@bash deploy/bootstrap.sh --browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip wheel
	@$(PY) -m pip install -q -e '.[test,check]'
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

stack-up: setup
	@$(NIGHTSHIFT) dev up

stack-down:
	@test -x $(NIGHTSHIFT) && $(NIGHTSHIFT) dev down || true

clean-stack: stack-down
	rm -rf .stack
