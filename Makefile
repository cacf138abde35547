# CommonWatch: the two commands of the README, plus helpers.
#   make run   - set up, create the demo federation in ./data (SQLite), serve on 127.0.0.1
#   make test  - set up and run the whole test suite (SQLite and PostgreSQL)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean setup

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/commonwatch demo
	exec $(BIN)/commonwatch serve

test: $(STAMP)
	$(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/taxii.py

clean:
	rm -rf $(VENV) data .pytest_cache
