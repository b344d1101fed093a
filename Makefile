# taskhub: `make run` (the whole platform in one process) and `make test` come first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)
PORT ?= 8080
BRAND ?= 9
ROLE ?= admin

# The tests' real services (this machine's PostgreSQL and RabbitMQ unless told otherwise).
export TEST_DATABASE_ADMIN_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
export TEST_AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/%2F

.PHONY: help install run token test test-unit console-test lint format clean up down status logs dead-letters contract asyncapi-parser k8s

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	# the taskhub distribution (SDK, client, `taskhub` command), editable: handler packages
	# installed here (docs/client.md) find their dependency, and .venv/bin/taskhub exists
	$(VENV)/bin/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed ## create the virtual environment (first use does it for you)

run: install ## the whole platform in one process on PORT (8080): SQLite, in-process bus
	@PORT=$(PORT) $(PY) -m shared.embedded_banner
	PORT=$(PORT) $(PY) -m shared.embedded

up: install ## the real topology: gunicorn per service, relays/consumers, worker(s), scheduler, nginx on GATEWAY_PORT (8000)
	$(PY) -m deploy.local.topology up

down: ## stop everything `make up` started
	$(PY) -m deploy.local.topology down

status: ## which processes of `make up` run and answer /readyz
	@$(PY) -m deploy.local.topology status

logs: ## follow the logs of `make up` (run/logs/)
	$(PY) -m deploy.local.topology logs --follow

k8s: install ## render every Kubernetes overlay with the pinned kustomize (kubectl kustomize) and validate each object
	$(PY) -m deploy.k8s.validate deploy/k8s/overlays/*/

dead-letters: install ## what consumers parked: make dead-letters [QUEUE=core.reports] [REPLAY=1]
	@$(PY) -m shared.dead_letters $(if $(REPLAY),replay $(QUEUE),list $(QUEUE))

token: install ## mint a development token: make token BRAND=9 ROLE=admin
	@$(PY) -m shared.dev_token --brand $(BRAND) --role $(ROLE)

# The official AsyncAPI parser (npm, pinned in tools/asyncapi/package-lock.json), where npm exists.
ASYNCAPI_PARSER := tools/asyncapi/node_modules/.package-lock.json
$(ASYNCAPI_PARSER): tools/asyncapi/package.json tools/asyncapi/package-lock.json
	npm ci --prefix tools/asyncapi --ignore-scripts --no-audit --no-fund
	touch $@

asyncapi-parser: $(ASYNCAPI_PARSER) ## install the official AsyncAPI parser (npm ci in tools/asyncapi)

contract: install $(ASYNCAPI_PARSER) ## regenerate docs/events/*.json and docs/asyncapi.yaml from shared/events/catalog.py, then parse the document
	$(PY) -m shared.events.contract
	node tools/asyncapi/validate.mjs docs/asyncapi.yaml

test: install $(if $(shell command -v npm),$(ASYNCAPI_PARSER)) ## unit and integration tests (real PostgreSQL and RabbitMQ from the environment)
	$(PY) -m pytest $(if $(filter true,$(CI)),,-m "not broker_outage")

test-unit: install ## only what needs no server
	TEST_DATABASE_ADMIN_URL= TEST_AMQP_URL= $(PY) -m pytest -m "not integration"

console-test: install ## the console in headless Chromium (and the client and command) through the gateway
	$(PY) -m pytest tests/integration/test_console.py tests/integration/test_client.py tests/client -q

lint: install ## ruff (lint + format check) everywhere, mypy over the shared library
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean: ## remove the embedded data folder (SQLite files, dev secret)
	rm -rf data

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(VENV)/bin/pip install --quiet -r requirements-bench.txt
	touch $@

.PHONY: bench bench-quick
bench: $(VENV)/.bench-installed ## the benchmarks (targets: docs/benchmarks.md): table + JSON in bench/results/
	$(PY) -m bench

bench-quick: $(VENV)/.bench-installed ## a reduced benchmark run (< 3 min); CI runs it without asserting speed
	$(PY) -m bench --quick
