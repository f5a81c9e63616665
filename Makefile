# The two commands a newcomer types are `make demo` and `make test`; both set up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test test-fast lint format clean help

help:
	@echo "make demo      setup, then the perception node on a synthetic camera with a scripted planner (outputs/demo/)"
	@echo "make setup      create .venv, install pinned dependencies, build uninext_msgs (idempotent)"
	@echo "make test       setup, lint (ruff), then the whole test suite with ROS isolation"
	@echo "make test-fast  setup, lint, tests not marked slow"
	@echo "make lint       ruff check"

setup:
	@bash scripts/setup.sh

demo: setup
	@$(PY) -m uninext_ros.demo $(DEMO_ARGS)

test: setup
	@bash scripts/run_tests.sh

test-fast: setup
	@bash scripts/run_tests.sh -m "not slow"

lint: setup
	@$(VENV)/bin/ruff check .

format: setup
	@$(VENV)/bin/ruff format .

clean:
	rm -rf build .pytest_cache .ruff_cache
