# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install

# Reinstalled when pyproject.toml changes (new dependency, new console script).
$(BIN)/reconcile: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/reconcile

# Validates manifests/, plans, applies and plans again on couchsim (or on $$COUCHDB_URL when set), then
# runs `reconcile watch` while two users sign up and shows it converging them.
demo: install
	@scripts/demo.sh

# The types (mypy) and the import contracts of docs/architecture.md (import-linter); configured in pyproject.toml.
lint: install
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: for this repository that is a failure, as any other.
test: install
	$(BIN)/python -m pytest -n auto -q
