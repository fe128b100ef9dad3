# The two commands: `make demo` and `make test`. Both create what they need (.venv, database).
PYTHON ?= python3
PORT   ?= 8000
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SETUP_LOG := $(VENV)/setup.log

.PHONY: demo test install bench lint clean

# Set-up is quiet: its output goes to .venv/setup.log and is shown only when something fails.
$(STAMP): pyproject.toml
	@echo "setting up $(VENV) (log: $(SETUP_LOG))"
	@$(PYTHON) -m venv $(VENV)
	@( $(BIN)/pip install --disable-pip-version-check --upgrade pip \
	   && $(BIN)/pip install --disable-pip-version-check -e '.[test,bench]' ) > $(SETUP_LOG) 2>&1 \
	  || { cat $(SETUP_LOG); echo "set-up failed (log above, also in $(SETUP_LOG))" >&2; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

## demo: a fresh SQLite ledger under var/demo with a realistic supply chain, served with its worker
## on http://127.0.0.1:$(PORT)/ (make demo PORT=8080 for another port)
demo: $(STAMP)
	@$(BIN)/provledger demo --port $(PORT)

## test: the whole suite (service-backed tests skip with a reason when a service is down,
## unless PROVLEDGER_REQUIRE_SERVICES=1)
test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) var/demo .pytest_cache
