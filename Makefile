# airtrain: two commands do all the set-up on a fresh machine.
#   make run    start the local stack (embedded PostgreSQL warehouse + Airflow 3 UI on :8080)
#   make test   install what is needed and run the whole test-suite on a throw-away PostgreSQL
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help venv run stop status demo demo-data ui-check load-test new-pipeline test test-unit lint bench bench-daily lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

venv: ## create .venv with the pinned requirements (idempotent)
	@bash scripts/bootstrap.sh

run: venv ## start PostgreSQL, Airflow (LocalExecutor) and the demo data; UI on localhost:8080
	@$(BIN)/python scripts/devstack.py up

stop: ## stop everything `make run` started
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/devstack.py down; fi

status: ## show what is running
	@$(BIN)/python scripts/devstack.py status

demo: venv ## a simulated month (covariate drift from day 20) through real DAG runs; summary + PNG chart
	@$(BIN)/python scripts/devstack.py demo $(DEMO_ARGS)

ui-check: venv ## the drift pages in headless Chromium against the running `make run` stack
	@$(BIN)/python scripts/ui_check.py

load-test: venv ## a 60-day backfill through the scheduler (LocalExecutor) of the running stack; checks invariants
	@$(BIN)/python scripts/load_test.py

demo-data: venv ## (re)generate the simulated demo data into the local warehouse
	@$(BIN)/python scripts/devstack.py demo-data

new-pipeline: venv ## a starting spec from a sample file: make new-pipeline SAMPLE=data.csv NAME=telco TARGET=Churn [KEY=customerID]
	@test -n "$(SAMPLE)" -a -n "$(NAME)" -a -n "$(TARGET)" || { echo "usage: make new-pipeline SAMPLE=file.csv NAME=<name> TARGET=<label column> [KEY=<key column>]"; exit 2; }
	@$(BIN)/python -m airtrain.scaffold "$(SAMPLE)" --name "$(NAME)" --target "$(TARGET)" $(if $(KEY),--key "$(KEY)",) $(SCAFFOLD_ARGS)

test: venv ## run the whole test-suite (starts and stops its own PostgreSQL)
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv ## only the fast tests that need no database
	@$(BIN)/python -m pytest -m "not integration and not e2e" $(PYTEST_ARGS)

lint: venv ## ruff (with Airflow's AIR rules)
	@$(BIN)/ruff check .

bench: venv ## benchmarks; results in docs/BENCHMARKS.md
	@$(BIN)/python bench/daily_run.py
	@$(BIN)/python bench/run.py
	@$(BIN)/python bench/drift.py

bench-daily: venv ## only the daily-run benchmark (a daily run through the real scheduler, ~4 min)
	@$(BIN)/python bench/daily_run.py

lock: venv ## recompile requirements.txt from requirements.in
	@$(BIN)/python -m uv pip compile requirements.in -o requirements.txt --python-version 3.11 --universal

clean: stop ## remove local state (.local: database, Airflow home, logs) and the venv
	rm -rf .local $(VENV)
