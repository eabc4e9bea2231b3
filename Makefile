# The commands of the README. Each one sets up what it needs first.
SHELL := /bin/bash
UV ?= uv
VENV := .venv/.synced
STACK ?= dev
STATE_DIR ?= $(HOME)/.pulumi-llm-stack

.PHONY: setup system-deps local-deps up preview down docker-engine local test test-fast lint typecheck unit bench bench-system bench-fair-burst bench-rollout semantic-eval

$(VENV): pyproject.toml gateway/pyproject.toml uv.lock
	@command -v $(UV) >/dev/null || python3 -m pip install -q uv
	$(UV) sync --frozen --quiet
	@touch $@

setup: $(VENV)

# redis-server, nginx, prometheus/promtool, the nginx exporter, openssl, node: what the
# tests drive for real (apt-get; a no-op once installed). It stops the system services
# those packages start, and installs CI tools: for tests and CI, never for `make local`.
system-deps:
	bash .ci/system-deps

# Only the missing packages the local stack runs, named before they are installed;
# no service of the host is started or stopped.
local-deps: $(VENV)
	$(UV) run --frozen llm-stack local deps

# Deploy a stack with Pulumi on this machine's Docker (dev by default: STACK=prod for
# the GPU box). State lives in $(STATE_DIR) (Pulumi.yaml's file backend). The Pulumi CLI
# is the one on your PATH, or else the pinned release, fetched once into $(TOOLS_DIR)
# and checked against its SHA-256 (infra/llm_stack/bootstrap/pulumi_cli.py).
TOOLS_DIR ?= $(CURDIR)/.tools
WITH_PULUMI = pulumi_dir="$$($(UV) run --frozen python -m llm_stack.bootstrap --tools-dir $(TOOLS_DIR))"; \
	export PATH="$$pulumi_dir:$$PATH"; \
	export PULUMI_CONFIG_PASSPHRASE="$${PULUMI_CONFIG_PASSPHRASE-}"

up: $(VENV) docker-engine
	@set -e; [ -n "$${PULUMI_CONFIG_PASSPHRASE+set}" ] || echo "note: PULUMI_CONFIG_PASSPHRASE is unset: using an empty passphrase (fine for a laptop dev stack only)"; \
	$(WITH_PULUMI); \
	mkdir -p $(STATE_DIR); \
	echo "+ pulumi stack select --create $(STACK)"; pulumi stack select --create $(STACK); \
	echo "+ pulumi up --stack $(STACK) --policy-pack infra/policy --yes"; pulumi up --stack $(STACK) --policy-pack infra/policy --yes; \
	echo; echo "gateway: $$(pulumi stack output gatewayUrl --stack $(STACK))   grafana: $$(pulumi stack output grafanaUrl --stack $(STACK))"; \
	echo "dev key: PULUMI_CONFIG_PASSPHRASE=... pulumi stack output devApiKey --show-secrets --stack $(STACK)"; \
	case "$$pulumi_dir" in "$(TOOLS_DIR)"/*) echo "pulumi is not on your PATH; for the commands above: export PATH=\"$$pulumi_dir:\$$PATH\"";; esac

preview: $(VENV) docker-engine
	@set -e; $(WITH_PULUMI); mkdir -p $(STATE_DIR); pulumi preview --stack $(STACK) --policy-pack infra/policy

# --run-program: the Ollama containers carry before_delete hooks (a drain through the
# gateway), which Pulumi can run only with the program loaded.
down: $(VENV) docker-engine
	@set -e; $(WITH_PULUMI); pulumi destroy --stack $(STACK) --yes --run-program

# The docker provider talks to the engine even for a preview.
docker-engine:
	@command -v docker >/dev/null || { echo "make $(MAKECMDGOALS) deploys to Docker, and this machine has no docker command. Without Docker, \`make local\` runs the same stack as plain processes on this host."; exit 1; }
	@docker info >/dev/null 2>&1 || { echo "docker is installed but its engine does not answer (\`docker info\` fails): start it, or check you may use its socket, then run make $(MAKECMDGOALS) again. Without Docker: \`make local\`."; exit 1; }

# The same stack as plain processes on this host, no Docker: nginx, the gateway,
# Redis, Prometheus, and Ollama (or its emulator when none answers on :11434).
local: local-deps $(VENV)
	$(UV) run --frozen llm-stack local up --stack $(STACK)

lint: $(VENV)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: $(VENV)
	$(UV) run --frozen mypy

# The whole suite, the slowest 25 tests listed at the end.
unit: system-deps $(VENV)
	$(UV) run --frozen pytest --durations=25

# The tests that start no process (no server, no binary): seconds, no system packages.
# The tiers (process, stack, slow) are in docs/development.md.
test-fast: $(VENV)
	$(UV) run --frozen pytest -m "not process"

# Everything CI runs: lint, types, then the whole test suite (pytest's exit 5, "no
# tests", is a failure too).
test: system-deps lint typecheck unit

bench: system-deps $(VENV)
	$(UV) run --frozen python -m bench.run

# The semantic cache's evaluation on the labelled set with the real all-MiniLM-L6-v2:
# false hits and hit rate at the default threshold, the guards, the curve. Rewrites
# bench/semantic/results.md, results.json and curve.png (about a minute).
semantic-eval: $(VENV)
	$(UV) run --frozen python -m bench.semantic --write

# The system benchmark: least-conn vs model-aware routing on emulated GPUs
# (about 9 minutes real); tables on stdout and in bench/system/results.md, plots beside it.
bench-system: system-deps $(VENV)
	$(UV) run --frozen python -m bench.system

# The fair queue's burst credit on a seeded model of W3 (the gateway's own queue,
# two slots, a light key beside a flooding one; under a second): a table on stdout.
bench-fair-burst: $(VENV)
	$(UV) run --frozen python -m bench.fair_burst

# Day-two operations under steady streaming load on the local stack (2 emulated Ollama
# instances, 2 gateways, the TLS edge): each Ollama instance and gateway replaced and the
# edge's certificate renewed, the planned way and the naive way (about 2 minutes).
# Writes bench/rollout/results.md, results.json and load.png; fails if a
# planned operation failed a request or cut a stream.
bench-rollout: system-deps $(VENV)
	$(UV) run --frozen python -m bench.rollout
