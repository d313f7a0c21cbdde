# Two commands for a newcomer: `make demo` and `make test`. Each bootstraps .venv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Every dependency (runtime and dev) is pinned in constraints.txt, which .venv is installed through
# (and the container image too); `make lock` / `make lock-upgrade` regenerate it with pip-compile.
LOCK := constraints.txt
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --allow-unsafe \
	--strip-extras --extra dev --no-emit-index-url --no-emit-find-links --output-file $(LOCK)

.PHONY: chaos demo test lint typecheck audit unit integration bench profile services clean lock lock-upgrade

$(STAMP): pyproject.toml $(LOCK)
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --constraint $(LOCK) --upgrade pip
	$(BIN)/pip install --quiet --constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

# Add what pyproject.toml gained to the pins, keeping the others (run after editing dependencies).
lock: $(STAMP)
	$(PIP_COMPILE) pyproject.toml

# Refresh every pin to the newest version pyproject.toml allows (then `make test`, and commit).
lock-upgrade: $(STAMP)
	$(PIP_COMPILE) --upgrade pyproject.toml

demo: $(STAMP)
	$(BIN)/nuvem-ledger demo

# The tests need RabbitMQ (with its management API, for a vhost per test) and PostgreSQL: `services`
# starts whatever of them is not answering, so `make test` works on a machine where nothing was set up.
test: $(STAMP) services lint typecheck audit
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Known vulnerabilities (PyPI's advisory data) in the pinned dependencies fail the build, unless
# pip-audit-ignore.toml ignores one with a reason (see tools/audit.py and docs/security.md).
audit: $(STAMP)
	$(BIN)/python -m tools.audit

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP) services
	$(BIN)/pytest tests/integration tests/e2e

# A three-node RabbitMQ cluster beside the local broker (hare1..3@localhost, AMQP 5701-5703).
.PHONY: cluster cluster-stop cluster-test
cluster:
	bash deploy/cluster/cluster.sh start

cluster-stop:
	bash deploy/cluster/cluster.sh stop

# The tests marked `cluster` (deselected by `make test`); they start the cluster if it is not running.
cluster-test: $(STAMP)
	$(BIN)/pytest -m cluster

# 10,000 orders with services killed at random and each broker/database fault once, on a
# private broker node and PostgreSQL; prints the reconciliation (docs/reliability.md).
chaos: $(STAMP)
	$(BIN)/python -m tests.faults.chaos

# py-spy profiles of each service during the bench's poll, webhook, confirmation and steady
# (many stores) phases, with CPU seconds per message: text summaries in PROFILE_DIR (raw stacks
# in PROFILE_DIR/raw). Waits for any other benchmark on the machine (the same lock).
PROFILE_DIR ?= .bench-logs/profile
profile: $(STAMP)
	flock /tmp/nuvem-bench.lock $(BIN)/nuvem-ledger bench --phases "a,b,c,d',e" --profile $(PROFILE_DIR)

# Start the local RabbitMQ and PostgreSQL when they are not answering (machines of this kind).
services:
	bash .ci/services.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
