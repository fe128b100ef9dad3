# The two commands: `make demo` and `make test`. Both create what they need (.venv, database).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

## demo: a fresh SQLite ledger under var/demo with a realistic supply chain, served with its worker
demo: $(STAMP)
	$(BIN)/provledger demo

## test: the whole suite (service-backed tests skip with a reason when a service is down,
## unless PROVLEDGER_REQUIRE_SERVICES=1)
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/demo .pytest_cache
