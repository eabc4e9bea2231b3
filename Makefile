# The commands of the README. Each one sets up what it needs first.
SHELL := /bin/bash
UV ?= uv
VENV := .venv/.synced
STACK ?= dev
STATE_DIR ?= $(HOME)/.pulumi-llm-stack

.PHONY: setup system-deps up preview down local test lint typecheck unit bench

$(VENV): pyproject.toml gateway/pyproject.toml uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install -q uv
	$(UV) sync --frozen --quiet
	@touch $@

setup: $(VENV)

# redis-server, nginx, prometheus/promtool, the nginx exporter, openssl, node: what the
# tests and the local stack drive for real (apt-get; a no-op once installed).
system-deps:
	bash .ci/system-deps

# Deploy a stack with Pulumi on this machine's Docker (dev by default: STACK=prod for
# the GPU box). State lives in $(STATE_DIR) (Pulumi.yaml's file backend).
up: $(VENV)
	@command -v pulumi >/dev/null || { echo "needs the Pulumi CLI: https://www.pulumi.com/docs/iac/download-install/"; exit 1; }
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "needs a running Docker engine (docker info fails)"; exit 1; }
	@mkdir -p $(STATE_DIR)
	@[ -n "$${PULUMI_CONFIG_PASSPHRASE+set}" ] || echo "note: PULUMI_CONFIG_PASSPHRASE is unset: using an empty passphrase (fine for a laptop dev stack only)"
	PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-}" pulumi stack select --create $(STACK)
	PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-}" pulumi up --stack $(STACK) --policy-pack infra/policy --yes
	@echo; echo "gateway: $$(pulumi stack output gatewayUrl --stack $(STACK))   grafana: $$(pulumi stack output grafanaUrl --stack $(STACK))"
	@echo "dev key: PULUMI_CONFIG_PASSPHRASE=... pulumi stack output devApiKey --show-secrets --stack $(STACK)"

preview: $(VENV)
	PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-}" pulumi preview --stack $(STACK) --policy-pack infra/policy

down: $(VENV)
	PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-}" pulumi destroy --stack $(STACK) --yes

# The same stack as plain processes on this host, no Docker: nginx, the gateway,
# Redis, Prometheus, and Ollama (or its emulator when none answers on :11434).
local: system-deps $(VENV)
	$(UV) run --frozen llm-stack local up --stack $(STACK)

lint: $(VENV)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: $(VENV)
	$(UV) run --frozen mypy

unit: system-deps $(VENV)
	$(UV) run --frozen pytest

# Everything CI runs: lint, types, then the whole test suite (pytest's exit 5, "no
# tests", is a failure too).
test: system-deps lint typecheck unit

bench: $(VENV)
	$(UV) run --frozen python -m bench.run
