# Two commands for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean

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

## bench: cost of one untouched case over the whole default ladder
bench: $(STAMP)
	$(BIN)/python bench/cost.py

clean:
	rm -rf $(VENV) .data
