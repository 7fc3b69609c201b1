# BRIGHT: two commands on a fresh machine -- `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test demo serve bench lint format typecheck system tools clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,evm]'
	touch $(STAMP)

# System packages the tests use: Debian's chromium (Playwright drives it; no browser download)
# and the Mosquitto command-line clients (mosquitto_pub publishes test readings).
system:
	@missing=""; test -x /usr/bin/chromium || missing="$$missing chromium"; \
	command -v mosquitto_pub >/dev/null || missing="$$missing mosquitto-clients"; \
	if [ -n "$$missing" ]; then \
	  (apt-get update -qq && apt-get install -y -qq $$missing >/dev/null) || echo "could not install:$$missing (those tests will skip)"; \
	fi

# anvil (a local EVM JSON-RPC node, npm package) for the ledger's anchor tests, under .tools/.
ANVIL := .tools/node_modules/.bin/anvil
tools: $(ANVIL)

$(ANVIL):
	@command -v npm >/dev/null && npm install --silent --no-audit --no-fund --prefix .tools @foundry-rs/anvil@1.7.1 \
	  || echo "could not install anvil (npm missing?): the anvil anchor test will skip"

test: install system tools
	PATH="$(CURDIR)/.tools/node_modules/.bin:$$PATH" $(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# The Brussels demo network: six community nodes + the city node, dashboard on http://127.0.0.1:8000/demo
# (DEMO_ARGS="--mqtt mqtt://127.0.0.1:1883" sends the last days through the broker; "--single": one node).
demo: install
	$(BIN)/bright demo $(DEMO_ARGS)

serve: install
	$(BIN)/bright serve

bench: install
	$(BIN)/python bench/run_all.py

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache bright.db
