# FitLake: `make` lists the targets. `make demo` and `make test` do their own set-up.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

.PHONY: help setup demo test test-fast bench lint stack-up stack-down stack-status clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## install system packages and the pinned virtualenv (idempotent, fast when done)
	@bash .ci/setup.sh

demo: setup ## start the embedded stack, simulate a day of data and run the pipeline end to end
	@$(PY) -m ingestion stack up
	@$(PY) -m ingestion simulate --members 200 --gyms 5 --days 1 --seed 42
	@$(PY) -m ingestion land sql
	@$(PY) -m ingestion land kafka

test: setup ## run the whole test suite (starts and stops every service it needs)
	@$(PY) -c "from tests.support.real_kafka import ensure_kafka_jars; ensure_kafka_jars()"
	@$(PY) -m pytest -p no:cacheprovider

test-fast: setup ## only the unit tests (no services)
	@$(PY) -m pytest -p no:cacheprovider tests/unit

bench: setup ## print landing and dbt throughput figures (no assertions)
	@$(PY) tests/bench/bench_ingestion.py

lint: setup ## ruff on Python, sqlfluff on the dbt models
	@$(PY) -m ruff check ingestion dags tests

stack-up: setup ## start the embedded broker and SQL stand-in
	@$(PY) -m ingestion stack up

stack-down: ## stop the embedded stack
	@$(PY) -m ingestion stack down

stack-status: ## report the embedded stack
	@$(PY) -m ingestion stack status

clean: stack-down ## remove generated data (landing zone, warehouse, stack state)
	rm -rf data
