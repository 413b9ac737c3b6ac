# FitLake: `make` lists the targets. `make demo` and `make test` do their own set-up.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PY := .venv/bin/python
export PYTHONPATH := $(CURDIR)

PHONY: help setup setup-dev setup-spark demo test test-fast test-dbt test-dags bench bench-ingestion bench-dbt bench-airflow \
	bench-spark lint airflow docs dbt-manifest \
	land stack-up stack-down stack-status clean dashboard

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## install system packages and the pinned virtualenv (idempotent, fast when done)
	@bash .ci/setup.sh

setup-dev: ## setup, plus the test and lint tools and the services tests start (PostgreSQL, Chromium)
	@bash .ci/setup.sh dev

setup-spark: ## setup-dev, plus the dbt `spark` target: pyspark, dbt-spark and the Delta Lake jars (Maven)
	@bash .ci/setup.sh dev spark

demo: setup dbt-manifest ## the whole pipeline once through Airflow on the embedded stack, then a report
	@$(PY) -m launchers.run_demo --members 200 --gyms 5 --days 1 --seed 42

land: setup ## start the embedded stack, simulate a day and land both sources (no Airflow, no dbt)
	@$(PY) -m ingestion stack up
	@$(PY) -m ingestion simulate --members 200 --gyms 5 --days 1 --seed 42
	@$(PY) -m ingestion land sql
	@$(PY) -m ingestion land kafka

airflow: setup dbt-manifest ## Airflow standalone on the embedded stack (URL and login printed); Ctrl-C stops it
	@$(PY) -m launchers.run_airflow

docs: setup dbt-manifest ## generate the dbt docs and serve them on http://localhost:8081 (not while a transform runs)
	@mkdir -p data/warehouse
	@FITLAKE_WAREHOUSE=$(CURDIR)/data/warehouse/fitlake.duckdb FITLAKE_LANDING_ROOT=$(CURDIR)/data/landing \
	  .venv/bin/dbt docs generate --project-dir dbt_project --profiles-dir dbt_project --target-path $(CURDIR)/data/dbt_docs
	@FITLAKE_WAREHOUSE=$(CURDIR)/data/warehouse/fitlake.duckdb FITLAKE_LANDING_ROOT=$(CURDIR)/data/landing \
	  .venv/bin/dbt docs serve --project-dir dbt_project --profiles-dir dbt_project --target-path $(CURDIR)/data/dbt_docs \
	  --port 8081 --no-browser

dashboard: setup ## snapshot gold and health, build the dashboard and serve it on http://localhost:8082 (no Airflow)
	@PYTHONPATH=$(CURDIR)/dags:$(CURDIR) $(PY) -m fitlake_common.dashboard

dbt-manifest: setup ## parse dbt_project into target/manifest.json (Cosmos renders transform_dbt from it)
	@$(PY) -m launchers.pipeline >/dev/null

test: setup-spark dbt-manifest ## run the whole test suite (starts and stops every service it needs)
	@$(PY) -c "from tests.support.real_kafka import ensure_kafka_jars; ensure_kafka_jars()"
	@$(PY) -m pytest -p no:cacheprovider -n 2 --dist loadscope

test-fast: setup-dev ## only the unit tests (no services)
	@$(PY) -m pytest -p no:cacheprovider tests/unit

test-dbt: setup-spark ## the dbt scenarios on temporary warehouses (DuckDB, and Spark + Delta)
	@$(PY) -m pytest -p no:cacheprovider tests/dbt

test-dags: setup-dev dbt-manifest ## DAG integrity, compose, end to end through Airflow, quality gate, UI smoke
	@$(PY) -m pytest -p no:cacheprovider tests/dags

bench: bench-ingestion bench-dbt bench-airflow ## print landing, dbt and scheduler figures beside bare baselines (no assertions)

bench-ingestion: setup-dev ## Kafka and SQL landing beside bare client loops
	@$(PY) tests/bench/bench_ingestion.py

bench-dbt: setup-dev ## full and incremental dbt build on 10M heart-rate rows
	@$(PY) tests/bench/bench_dbt.py

bench-airflow: setup-dev dbt-manifest ## cycles through the real scheduler (demo scale, then 10M + 1 %) beside a bare dbt build
	@$(PY) tests/bench/bench_airflow.py

bench-spark: setup-spark ## the same full and incremental dbt build on Spark + Delta beside DuckDB, peak memory with the JVM
	@$(PY) tests/bench/bench_spark.py

lint: setup-dev ## ruff (lint and format check) on Python, sqlfluff on the dbt models
	@$(PY) -m ruff check ingestion dags launchers tests
	@$(PY) -m ruff format --check ingestion dags launchers tests
	@cd dbt_project && FITLAKE_WAREHOUSE=:memory: ../.venv/bin/sqlfluff lint models

stack-up: setup ## start the embedded broker and SQL stand-in
	@$(PY) -m ingestion stack up

stack-down: ## stop the embedded stack
	@$(PY) -m ingestion stack down

stack-status: ## report the embedded stack
	@$(PY) -m ingestion stack status

clean: stack-down ## remove generated data (landing zone, warehouse, stack state, Airflow home)
	rm -rf data .airflow
