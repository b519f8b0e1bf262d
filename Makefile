# The README's two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

NODE_TESTS := tests/pouchdb

.PHONY: test-real demo test lint install

# Reinstalled when pyproject.toml changes (new dependency, new console script).
$(BIN)/reconcile: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/reconcile

# The PouchDB test's npm packages, exactly as package-lock.json pins them (reinstalled when it changes).
$(NODE_TESTS)/node_modules/.package-lock.json: $(NODE_TESTS)/package-lock.json
	npm ci --prefix $(NODE_TESTS) --no-audit --no-fund --loglevel=error
	touch $@

# Validates manifests/, plans, applies and plans again on couchsim (or on $$COUCHDB_URL when set), then
# runs `reconcile watch` while two users sign up and shows it converging them.
demo: install
	@scripts/demo.sh

# The types (mypy) and the import contracts of docs/architecture.md (import-linter); configured in pyproject.toml.
lint: install
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: for this repository that is a failure, as any other.
# The browser tests also need Debian's chromium at /usr/bin/chromium (`apt-get install chromium`, as .ci/run does).
test: install $(NODE_TESTS)/node_modules/.package-lock.json
	$(BIN)/python -m pytest -n auto -q

# The suite against the real CouchDB at $$COUCHDB_URL (and the cluster tests against $$COUCHDB_CLUSTER_URLS when
# set), one test at a time: tests change the server's global config (couch_peruser, CORS, server admins), which
# parallel tests on one server would see. -rs lists why each skipped test cannot run on that server.
test-real: install $(NODE_TESTS)/node_modules/.package-lock.json
	@test -n "$$COUCHDB_URL" || { echo "test-real: set COUCHDB_URL, COUCHDB_USER and COUCHDB_PASSWORD (see README.md)" >&2; exit 2; }
	$(BIN)/python -m pytest -n 0 -q -rs
