# The single entry point. Every target bootstraps the virtual environment from the lock file.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Packages are installed with their bytecode compiled (uv does not compile by default, unlike
# pip): without .pyc files every dbt, Dagster or pytest process compiles its imports from source,
# ~2 s CPU more per dbt invocation (docs/benchmarks.md "Main job"), and nothing writes them later
# where PYTHONDONTWRITEBYTECODE is set or the venv is read-only.
UV_INSTALL := $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python
# The stamp is keyed on the lock, pyproject.toml, the install command and the interpreter's full
# version: a kept .venv (a persistent CI runner) is rebuilt when the Python patch version changes.
STAMP := $(VENV)/.installed-$(shell (cat requirements.lock pyproject.toml; echo '$(UV_INSTALL)'; $(PYTHON) -V 2>&1) | cksum | cut -d' ' -f1)

export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DBT_VERSION_CHECK := false
export DBT_PROFILES_DIR := $(CURDIR)/profiles
export DATAOPS_HOME ?= $(CURDIR)/.dataops
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help install system-deps run test test-fast bench lock clean manifest ui lint elementary

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	if [ "$$($(BIN)/python -V 2>&1)" != "$$($(PYTHON) -V 2>&1)" ]; then rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(UV_INSTALL) -r requirements.lock
	$(UV_INSTALL) --no-deps -e .
	# uv compiles only what it installs: a kept venv whose packages were installed before gets
	# its bytecode here (docs/benchmarks.md, "Dagster latency": import dagster 7.2 -> 3.6 s CPU).
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## create .venv from requirements.lock

system-deps:  ## install the Debian packages listed in system-packages.txt (as root, when missing)
	@pkgs=$$(sed 's/#.*//' system-packages.txt | xargs); \
	missing=$$(for p in $$pkgs; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done | xargs); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing $$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null; \
	  else echo "missing Debian packages: $$missing (run: sudo make system-deps)"; exit 1; fi; \
	fi

run: $(STAMP)  ## generate sample data if missing, ingest new files, dbt build, print a summary
	$(BIN)/dataops run

DAGSTER_HOME ?= $(DATAOPS_HOME)/dagster_home
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000

# Elementary from a fresh clone to its report (README "Elementary"); needs a dbt package hub
# (DBT_PACKAGE_HUB_URL for a mirror). Its monitors look back 14 days from today, so the sample
# data generated when nothing has landed yet starts 30 days ago.
elementary: $(STAMP)  ## Elementary's package + monitors, ingest and build, then `edr report` (needs a package hub)
	$(BIN)/dataops elementary setup
	$(BIN)/dataops run --start $$(date -u -d '30 days ago' +%F)
	$(BIN)/dataops elementary report

manifest: $(STAMP)  ## parse the dbt project once into target/manifest.json (the Dagster definitions load it)
	$(BIN)/dataops dbt prepare

# `dagster dev` runs under a small supervisor (dataops/core/supervise.py) in its own process group,
# whose id is written to $(DAGSTER_HOME)/ui.pid. Ctrl-C, INT to make's process group or TERM to
# make (which forwards it) stop the webserver, daemon and code servers, also when make was started
# by a script or under setsid with SIGINT ignored (a shell cannot trap that; the supervisor can).
ui: manifest  ## Dagster UI + daemon on http://127.0.0.1:3000 (instance config: orchestration/instance/)
	mkdir -p "$(DAGSTER_HOME)"
	cp orchestration/instance/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"
	DAGSTER_HOME="$(DAGSTER_HOME)" exec $(BIN)/python -m dataops.core.supervise \
	  --pid-file "$(DAGSTER_HOME)/ui.pid" -- \
	  $(BIN)/dagster dev -h $(UI_HOST) -p $(UI_PORT) -m orchestration.definitions

# Test modules run in parallel, one module per worker (its module fixtures stay in one process);
# the built sample platform is made once per session and shared (tests/python/conftest.py).
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile --durations 15

test: $(STAMP) system-deps manifest  ## the whole test suite (slow end-to-end tests included)
	$(BIN)/pytest $(PYTEST_PARALLEL)

test-fast: $(STAMP) manifest  ## every concern without the full build: the tests not marked slow
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow"

lint: $(STAMP)  ## quality gates on every file: sqlfluff, ruff, YAML/whitespace, sources sync, dbt parse, project rules
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

bench: $(STAMP)  ## benchmarks that print figures (see bench/README.md)
	$(BIN)/python bench/bench_main.py

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile --python $(BIN)/python pyproject.toml --all-extras -o requirements.lock

clean:  ## remove generated data, warehouses and dbt artefacts, Elementary's setup (keeps .venv)
	rm -rf .dataops landing target logs dbt_packages packages.yml package-lock.yml models/elementary_monitors
