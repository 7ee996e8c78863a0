# Two commands: `make run` (local stack + collector + API on :7071) and `make test` (the whole suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test setup clean chromium

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The dashboard test renders the page in real headless Chromium: Debian's package (a downloaded browser build
# cannot be fetched here). Installed once, as root (CI runs as root).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard test"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
	  || { echo "could not install chromium: run 'apt-get install chromium' as root" >&2; exit 1; }; }

run: setup
	$(PY) -m devstack.run

test: setup chromium
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks against the issue-7 targets on the local stack, with and without modelled latency (not part of
# make test; about 15 minutes on 2 cores; `$(PY) -m bench --quick` for a smoke run). See BENCHMARKS.md.
.PHONY: bench
bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache test-artifacts
