# FleetPulse: one entry point for running, testing and benchmarking the platform.
SHELL := /bin/bash
# uv on PATH or in ~/.local/bin, else installed there by scripts/uv (same method as .ci/run)
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= $(CURDIR)/scripts/uv
PACKAGES := fleetpulse.common fleetpulse.testing fleetpulse.ingest fleetpulse.evaluator \
	fleetpulse.dispatcher fleetpulse.delivery_worker fleetpulse.provision_api fleetpulse.exporter \
	fleetpulse.dev_oidc fleetpulse.devstack fleetpulse.simulator fleetpulse.smoke
MYPYPATH := $(shell ls -d libs/*/src services/*/src tools/*/src 2>/dev/null | paste -sd: -)
PYTEST_ARGS ?=
TIMESCALE_HARNESS := libs/testing/timescale

.PHONY: help uv sync timescale-harness up down dev test test-fast lint typecheck format bench bench-eventstore \
	bench-ingest bench-evaluator bench-no-data bench-delivery bench-api bench-e2e bench-export bench-console \
	bench-layout bench-backtest smoke verify simulate migrate config-table contracts console console-test

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

uv: ## find or install uv (PATH, ~/.local/bin, else from PyPI into a private venv) and show its version
	$(UV) --version

sync: ## install the workspace (one venv, locked)
	$(UV) sync --locked

up: ## run the full platform with Docker Compose (needs a Docker engine)
	./compose/up.sh

down: ## stop the Compose stack
	./compose/down.sh

dev: sync console ## run the platform as local processes (no Docker): PostgreSQL, private broker, moto, dev OIDC, five services, the console
	$(UV) run fleetpulse-dev $(DEV_ARGS)

console: ## build the operator console into console/dist (Node 20 + npm; checks the 250 KB JS budget)
	@if ! command -v npm >/dev/null; then \
		echo "make console: npm not found, the console is not built (install Node 20)"; exit 0; fi; \
	cd console && if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
		npm ci --no-audit --no-fund; fi && \
	if [ ! -f dist/index.html ] || [ -n "$$(find src index.html package-lock.json vite.config.ts -newer dist/index.html | head -n1)" ]; then \
		npm run build; else echo "make console: console/dist is up to date"; fi

console-test: console ## the console's unit tests (Vitest)
	cd console && npm test

migrate: sync ## apply database migrations to FLEETPULSE_DATABASE_URL
	$(UV) run fleetpulse-migrate

lint: sync ## ruff check and ruff format --check
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: sync ## mypy (strict for libs/common)
	MYPYPATH=$(MYPYPATH) $(UV) run mypy $(addprefix -p ,$(PACKAGES))

$(TIMESCALE_HARNESS)/node_modules/.package-lock.json: $(TIMESCALE_HARNESS)/package-lock.json
	cd $(TIMESCALE_HARNESS) && npm ci --legacy-peer-deps --no-audit --no-fund

timescale-harness: $(TIMESCALE_HARNESS)/node_modules/.package-lock.json ## npm ci the test-only TimescaleDB (PGlite) server

test: lint typecheck timescale-harness ## ruff, mypy and every test suite (slow ones included)
	$(UV) run pytest $(PYTEST_ARGS)

test-fast: sync timescale-harness ## the tests not marked slow
	$(UV) run pytest -m "not slow" $(PYTEST_ARGS)

format: sync ## ruff format and the safe ruff fixes
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: sync console timescale-harness ## every benchmark; writes benchmarks/results.json and benchmarks/results.md
	$(UV) run python benchmarks/run_all.py

bench-eventstore: sync ## event store appends/s and catch-up reads/s
	$(UV) run python benchmarks/eventstore.py

bench-ingest: sync ## ingest messages/s and readings/s vs a naive bridge and mosquitto_sub
	$(UV) run python benchmarks/ingest.py

bench-evaluator: sync ## evaluator readings/s and breach -> AlertOpened latency (--mixed: rules with windows)
	$(UV) run python benchmarks/evaluator.py

bench-no-data: sync ## no_data at 100,000 devices (99% silent, unselected): every due deadline fires within timeout_s + 5 s
	$(UV) run python benchmarks/no_data.py

bench-delivery: sync ## deliveries/s and alert event -> webhook latency
	$(UV) run python benchmarks/delivery.py

bench-api: sync ## API p99 at a fixed rate and maximum req/s per endpoint
	$(UV) run python benchmarks/api.py

bench-e2e: sync ## breach -> webhook latency p50/p99 and peak RSS per service on the dev stack
	$(UV) run python benchmarks/e2e.py

bench-export: sync ## exporter telemetry rows/s and events/s to S3 (moto) as Parquet
	$(UV) run python benchmarks/export.py

bench-backtest: sync ## POST /rules/preview's work over 1,000,000 stored readings (target < 10 s)
	$(UV) run python benchmarks/backtest.py

bench-console: sync console ## the console's fleet page with 10,000 devices in Chromium (first rows, paging, scroll frames)
	$(UV) run python benchmarks/console.py

bench-layout: sync timescale-harness ## telemetry layouts: DB CPU and bytes per reading, readings/s
	$(UV) run python benchmarks/telemetry_layout.py --timescale

smoke: sync ## end-to-end check against a running stack (make dev or make up; SMOKE_ARGS="--mode aws" for AWS)
	$(UV) run fleetpulse-smoke $(SMOKE_ARGS)

verify: sync ## what is stale on a deployed stack: telemetry per tenant, queue/DLQ depths, last delivery
	$(UV) run fleetpulse-verify $(VERIFY_ARGS)

simulate: sync ## simulated devices publishing telemetry to a running stack
	$(UV) run fleetpulse-simulate $(SIMULATE_ARGS)

config-table: sync ## rewrite the README configuration table from the settings classes
	$(UV) run python scripts/config_table.py --write

contracts: sync ## regenerate docs/openapi.json, docs/asyncapi.yaml, docs/settings.md and docs/events.md from the code
	$(UV) run python scripts/contracts.py
