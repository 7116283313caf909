# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-desk bench-lab report simulate sync-schedule sync-run sync-status clean

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

## report: the collection KPIs from the ledger (docs/kpis.md) by BY for [FROM, TO) (default: the last 90
## days, by strategy) as a table, and as a page with charts in .data/reports/kpis.html; agents' figures as CSV
FROM ?= $(shell $(PYTHON) -c 'import datetime as d; print(d.date.today() - d.timedelta(days=90))')
TO   ?= $(shell $(PYTHON) -c 'import datetime as d; print(d.date.today() + d.timedelta(days=1))')
BY   ?= strategy
report: $(STAMP)
	mkdir -p .data/reports
	$(BIN)/python -m reports kpis --from $(FROM) --to $(TO) --by $(BY)
	$(BIN)/python -m reports kpis --from $(FROM) --to $(TO) --by $(BY) --format html --out .data/reports/kpis.html
	$(BIN)/python -m reports agents --from $(FROM) --to $(TO) --format csv --out .data/reports/agents.csv
	@echo "report: .data/reports/kpis.html, .data/reports/agents.csv"

## simulate: the strategy lab: SIM_CASES synthetic loans under the champion and the challenger for 180
## simulated days on the time-skipping server (the real workflow), side by side, marked SIMULATED
SIM_CASES ?= 200
SEED      ?= 1
simulate: $(STAMP)
	mkdir -p .data/lab
	$(BIN)/python -m lab portfolio --cases $(SIM_CASES) --seed $(SEED) --out .data/lab/portfolio.csv
	$(BIN)/python -m lab simulate --portfolio .data/lab/portfolio.csv --strategy default --strategy early_contact \
		--days 180 --behaviour lab/behaviour.toml --seed $(SEED)
	$(BIN)/python -m lab simulate --portfolio .data/lab/portfolio.csv --strategy default --strategy early_contact \
		--days 180 --behaviour lab/behaviour.toml --seed $(SEED) --format html --out .data/lab/simulation.html
	@echo "simulation: .data/lab/simulation.html"

## bench-lab: simulated cases per second, the real workflow against a skeleton of the same shape
bench-lab: $(STAMP)
	$(BIN)/python bench/lab.py --cases 200 --days 180

clean:
	rm -rf $(VENV) .data
