# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-desk sync-schedule sync-run sync-status clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: dev server (SQLite under .data/, Web UI), worker, and the sample portfolio on the demo strategy
run: $(STAMP)
	$(BIN)/python -m infra.devstack

## test: every test (unit, activities, workflows on the time-skipping server, replay, end-to-end)
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: the whole table (docs/benchmarks.md): billable actions of one case over the default ladder,
## then a 2,000-case portfolio on this machine (intake, backlog, operators, memory, scale-out, letters);
## BENCH_CASES=10000 for the large run
BENCH_CASES ?= 2000
bench: $(STAMP)
	$(BIN)/python bench/cost.py
	$(BIN)/python bench/load.py --cases $(BENCH_CASES)

## bench-desk: the workbench with DESK_CASES live cases (queue, case page, portfolio vs /healthz), then the
## portfolio's queries over a 10,000-case ledger (SQLite, and PostgreSQL when it answers)
DESK_CASES ?= 10000
bench-desk: $(STAMP)
	$(BIN)/python bench/desk.py --cases $(DESK_CASES)
	$(BIN)/python bench/portfolio.py

## sync-schedule / sync-run / sync-status: the daily sync from the servicer (ARREARS_SYNC_FOLDER, or
## ARREARS_SYNC_SQL_URL + ARREARS_SYNC_SQL_QUERY): create or update the schedule, run it now, the files seen
sync-schedule: $(STAMP)
	$(BIN)/python -m sync schedule

sync-run: $(STAMP)
	$(BIN)/python -m sync run

sync-status: $(STAMP)
	$(BIN)/python -m sync status

clean:
	rm -rf $(VENV) .data
