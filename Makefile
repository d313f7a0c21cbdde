# Two commands for a newcomer: `make demo` and `make test`. Each bootstraps .venv from pyproject.toml.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test lint typecheck unit integration bench services clean

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/nuvem-ledger demo

# The tests need RabbitMQ (with its management API, for a vhost per test) and PostgreSQL: `services`
# starts whatever of them is not answering, so `make test` works on a machine where nothing was set up.
test: $(STAMP) services lint typecheck
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

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

# Start the local RabbitMQ and PostgreSQL when they are not answering (machines of this kind).
services:
	bash .ci/services.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
