# PermitGame: `make run` to play locally, `make test` for everything CI checks.
# Works as root with no TTY (CI): apt runs non-interactively and only when something is missing.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Where players open the game. Served on all interfaces (HOST=0.0.0.0), that is this machine's
# first network address, which phones on the classroom's network can reach.
PUBLIC_HOST ?= $(if $(filter 0.0.0.0,$(HOST)),$(shell hostname -I 2>/dev/null | awk '{print $$1}'),$(HOST))
BASE_URL ?= http://$(PUBLIC_HOST):$(PORT)

export DEBIAN_FRONTEND := noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# Run apt-get as root directly, otherwise through sudo when there is one.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv sysdeps lint format test run bench bench-load bench-study vendor clean

help:
	@echo "make run      install what is missing, migrate, and serve on http://$(HOST):$(PORT)/"
	@echo "make test     system packages + venv + lint + the whole test suite (what CI runs)"
	@echo "make lint     ruff check, ruff format --check, mypy, lint-imports"
	@echo "make format   apply ruff's fixes and formatting"
	@echo "make bench    run bench/run.py when it exists"
	@echo "make bench-load  rooms of players against real servers, beside the bare floor (ARGS=--quick)"
	@echo "make bench-study  parameter studies against the sweep, local processes and Dask"
	@echo "make vendor   refresh static/vendor/ from pinned npm packages (files are committed)"
	@echo "make clean    remove the venv, caches and test artifacts (keeps db.sqlite3)"

# ------------------------------------------------------------------------------- environment

venv: $(STAMP)

# Re-installs only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

# System packages the tests and `make run` use: redis-server, Debian's chromium (Playwright drives
# it; never `playwright install`), and PostgreSQL's server binaries (initdb, pg_ctl), which are
# either on PATH or in Debian's /usr/lib/postgresql/<version>/bin.
sysdeps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-liberation"; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  missing="$$missing postgresql"; \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "sysdeps: installing$$missing"; \
	  $(SUDO) apt-get update -q; \
	  $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else \
	  echo "sysdeps: redis-server, chromium and PostgreSQL are present"; \
	fi

# ------------------------------------------------------------------------------- checks

# mypy: strict on sim_core, disallow_untyped_defs on permitgame (pyproject.toml). sim_core is
# written alongside; only while the package does not exist yet are its mypy run and the
# import-linter contracts (whose root package it is) left out.
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if [ -d sim_core ]; then \
	  echo "$(BIN)/mypy sim_core permitgame tests/typecheck"; $(BIN)/mypy sim_core permitgame tests/typecheck; \
	  echo "$(BIN)/lint-imports"; $(BIN)/lint-imports; \
	else \
	  echo "sim_core/ not present yet: mypy on permitgame only, import contracts skipped"; \
	  $(BIN)/mypy permitgame; \
	fi

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Two passes: everything on SQLite, then the service, whole-game and PostgreSQL tests with the
# test database on a real PostgreSQL server the run starts (tests/conftest.py: --postgres).
POSTGRES_TESTS := tests/permitgame/test_services.py tests/permitgame/test_whole_game.py \
	tests/permitgame/test_servers.py tests/permitgame/test_hall_joins.py \
	tests/permitgame/test_prepared.py

# The main pass runs on TEST_WORKERS processes (pytest-xdist), each a whole module at a time in
# collection order (a module's own server starts once; browser modules last, see
# tests/conftest.py); each worker starts its own session servers and browser. The
# PostgreSQL pass runs beside it (much of the main pass waits on servers and a browser); its
# output follows the main pass's, and `make test` fails if either fails. Three workers on two
# cores: each worker spends much of its time waiting on a server or a browser, and a third one's
# tests fill those waits (bench/RESULTS.md, "A faster suite").
TEST_WORKERS ?= 3
PYTEST_PARALLEL := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The run starts over a hundred Python processes (manage.py, Daphne, the sim_core command line,
# the workers): each compiles the project's modules once for all instead of on every start.
# Lint runs beside the tests too (mypy from a cold cache, as in a fresh clone, takes half a
# minute of one core, while the tests spend much of theirs waiting on servers and a browser);
# its output comes first, the PostgreSQL pass's last, and `make test` fails if any of the three
# fails.
test: sysdeps venv
	@unset PYTHONDONTWRITEBYTECODE; logs=$$(mktemp -d); lint=""; pg=""; \
	trap '[ -z "$$lint" ] || kill $$lint 2>/dev/null; [ -z "$$pg" ] || kill $$pg 2>/dev/null; \
	  rm -rf "$$logs"' EXIT; \
	echo "$(MAKE) lint (beside the tests)"; \
	$(MAKE) --no-print-directory lint >"$$logs/lint" 2>&1 & lint=$$!; \
	echo "$(BIN)/python -m pytest --postgres -q $(POSTGRES_TESTS) (beside the main pass)"; \
	$(BIN)/python -m pytest --postgres -q -p no:cacheprovider $(POSTGRES_TESTS) \
	  >"$$logs/pg" 2>&1 & pg=$$!; \
	echo "$(BIN)/python -m pytest $(PYTEST_PARALLEL)"; \
	main=0; $(BIN)/python -m pytest $(PYTEST_PARALLEL) || main=$$?; \
	linted=0; wait $$lint || linted=$$?; lint=""; \
	postgres=0; wait $$pg || postgres=$$?; pg=""; \
	echo "---------------- lint"; cat "$$logs/lint"; \
	echo "---------------- the PostgreSQL pass"; cat "$$logs/pg"; \
	[ $$linted -eq 0 ] && [ $$main -eq 0 ] && [ $$postgres -eq 0 ]

# ------------------------------------------------------------------------------- running

# The address players use is allowed too (with DEBUG on, loopback always is).
run: export DJANGO_ALLOWED_HOSTS ?= $(PUBLIC_HOST)
run: venv
	$(BIN)/python manage.py migrate --no-input
	@if $(BIN)/python manage.py help demo >/dev/null 2>&1; then \
	  $(BIN)/python manage.py demo --base-url $(BASE_URL); \
	fi
	@echo
	@echo "  PermitGame:  $(BASE_URL)/"
	@echo "  Admin:       $(BASE_URL)/admin/  (no login yet? $(BIN)/python manage.py createsuperuser)"
	@echo "  Stop:        Ctrl-C"
	@echo
	exec $(BIN)/daphne -b $(HOST) -p $(PORT) permitgame.asgi:application

bench: venv
	@if [ -f bench/run.py ]; then \
	  $(BIN)/python bench/run.py; \
	else \
	  echo "bench: bench/run.py does not exist yet (see bench/README.md)"; \
	fi

# Starts its own servers (Daphne, Redis, PostgreSQL) on 127.0.0.1, stops them at the end; about
# 15 minutes (ARGS=--quick: under 2). Writes its section of bench/RESULTS.md.
bench-load: sysdeps venv
	$(BIN)/python -m bench.load $(ARGS)

# Parameter studies (docs/studies.md) against the heatmap sweep, local processes against a Dask
# LocalCluster, memory at two sizes; POINTS sets the size (10000: the issue's full workload).
POINTS ?= 1000
bench-study: venv
	$(BIN)/python bench/study.py --points $(POINTS)

vendor:
	scripts/vendor_js.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache artifacts staticfiles build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
