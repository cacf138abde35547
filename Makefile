# CommonWatch: the two commands of the README, plus helpers.
#   make run   - set up, create the demo federation in ./data (SQLite), serve on 127.0.0.1
#   make test  - set up and run the whole test suite (SQLite and PostgreSQL)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean setup native

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

# The reference matcher (stix2-matcher) needs stix2-patterns 2.0.0, which conflicts with the
# project's pin, so the detection engine's differential tests run it from its own virtualenv.
REF_VENV  := .venv-ref
REF_STAMP := $(REF_VENV)/.installed

$(REF_STAMP): requirements-ref.txt
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install --quiet -r requirements-ref.txt
	touch $(REF_STAMP)

# The hot modules compiled with mypyc (tools/native.py), again whenever one changes.
# Without a C compiler CommonWatch runs as pure Python, the same code.
NATIVE         := $(VENV)/.native
NATIVE_SOURCES := $(shell $(PYTHON) tools/native.py sources)

$(NATIVE): $(STAMP) tools/native.py $(NATIVE_SOURCES)
	$(BIN)/python tools/native.py build || echo "native: continuing as pure Python"
	touch $(NATIVE)

native: $(NATIVE)

setup: $(STAMP) $(NATIVE)

run: $(STAMP) $(NATIVE)
	$(BIN)/commonwatch demo
	exec $(BIN)/commonwatch serve

test: $(STAMP) $(REF_STAMP) $(NATIVE)
	$(BIN)/pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check src tests bench tools
	$(BIN)/mypy src

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python bench/taxii.py

clean:
	$(PYTHON) tools/native.py clean
	rm -rf $(VENV) $(REF_VENV) data .pytest_cache
