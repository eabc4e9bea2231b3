# The commands of the README. Each one sets up what it needs first.
SHELL := /bin/bash
UV ?= uv
VENV := .venv/.synced

.PHONY: test lint typecheck unit setup

$(VENV): pyproject.toml gateway/pyproject.toml uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install -q uv
	$(UV) sync --frozen --quiet
	@touch $@

setup: $(VENV)

lint: $(VENV)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: $(VENV)
	$(UV) run --frozen mypy

unit: $(VENV)
	$(UV) run --frozen pytest

# Everything CI runs: lint, types, then the whole test suite (exit 5, no tests, fails too).
test: lint typecheck unit
