# Every target is documented in README.md ("Make targets").
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        ?= .venv
PY          := $(VENV)/bin/python
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
CHECKOV_VENV  ?= .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
PYTEST_ARGS ?=
MUTATION_BASE ?= origin/main
MUTATION_BUDGET ?= 600

export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: help setup setup-browser test-browser run demo test test-unit test-integration test-e2e test-fuzz test-local-runtime pytest lint format typecheck build bench \
        mutation mutation-slice layer-requirements lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@set -e; PY313="$$(scripts/find_python.sh)"; \
	  if [[ ! -x $(PY) ]] || ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
	    rm -rf $(VENV); "$$PY313" -m venv $(VENV); fi
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]' 2>&1 | grep -v '^WARNING: Location' || true
	$(PY) -c 'import aws_lambda_powertools, moto, localstripe, stripe, samtranslator, pytest, schemathesis, playwright' # fail loudly if pip did
	@touch $(STAMP)

setup: $(STAMP) $(CHECKOV_STAMP) ## create .venv (Python 3.13) and .venv-checkov with the pinned dependencies

setup-browser: ## install Debian's chromium for tests/browser (apt-get: needs root or sudo; does nothing when present)
	scripts/install_browser.sh

# checkov's dependencies conflict with constraints.txt, so it has a venv of its own.
$(CHECKOV_STAMP): tools/checkov/requirements.txt
	@set -e; PY313="$$(scripts/find_python.sh)"; rm -rf $(CHECKOV_VENV); "$$PY313" -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -r tools/checkov/requirements.txt 2>&1 | grep -v '^WARNING: Location' || true
	$(CHECKOV_VENV)/bin/checkov --version
	@touch $(CHECKOV_STAMP)

run: $(STAMP) ## start the local stack in the foreground (API on 127.0.0.1:3000)
	$(PY) -m local_runtime run $(ARGS)

demo: $(STAMP) ## start the stack, run the scenario over HTTP, print a report, exit 0/1
	$(PY) -m local_runtime demo $(ARGS)

test: lint build pytest ## lint + template validation + sam build + every test tier

pytest: $(STAMP) ## all test tiers (fuzz suite included) with the coverage floor for billing_core; every route's answers checked
	OPENAPI_CONTRACT_COVERAGE_REQUIRED=1 $(BIN)/pytest -n 2 --cov --cov-report=term $(PYTEST_ARGS)

test-unit: $(STAMP) ## unit tests only (no network)
	$(BIN)/pytest tests/unit tests/template $(PYTEST_ARGS)

test-integration: $(STAMP) ## moto server tests
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

test-e2e: $(STAMP) ## through the local runtime over HTTP
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

test-browser: $(STAMP) ## the operations console in headless Chromium through the local runtime (make setup-browser first)
	$(BIN)/pytest tests/browser $(PYTEST_ARGS)

test-fuzz: $(STAMP) ## the HTTP fuzz suite alone; BILLING_FUZZ_CASES=N sets its number of requests (10000)
	$(BIN)/pytest tests/fuzz $(PYTEST_ARGS)

test-local-runtime: $(STAMP) ## the local runtime's own tests (engine, profile, CLI, boundaries)
	$(BIN)/pytest tests/local_runtime $(PYTEST_ARGS)

lint: $(STAMP) $(CHECKOV_STAMP) ## ruff, mypy, import contracts, layer requirements drift, sam validate --lint, cfn-lint, checkov
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	PYTHONPATH=layers/billing_core:. $(BIN)/lint-imports --no-cache
	$(PY) scripts/layer_requirements.py --check
	$(BIN)/sam validate --lint --template template.yaml
	$(BIN)/cfn-lint template.yaml
	$(PY) scripts/checkov_gate.py --checkov $(CHECKOV_VENV)/bin/checkov

format: $(STAMP) ## apply ruff formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

build: $(STAMP) ## sam build (no container) with the Lambda runtime's Python first on PATH
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/sam build --cached --parallel

bench: $(STAMP) ## benchmarks; writes docs/benchmarks.md
	$(PY) scripts/bench.py --output docs/benchmarks.md

mutation: $(STAMP) ## mutation testing of the critical modules (tools/mutation/map.toml) with mutmut; rewrites docs/testing.md's section
	$(PY) scripts/mutation.py run

mutation-slice: $(STAMP) ## mutants of the critical modules changed since origin/main (MUTATION_BASE=...), or a fixed sample (MUTATION_BUDGET=600 s); fails on an unlisted survivor or a score under its floor
	$(PY) scripts/mutation.py slice --base $(MUTATION_BASE) --budget-seconds $(MUTATION_BUDGET)

layer-requirements: ## regenerate layers/billing_core/requirements.txt from pyproject.toml
	$(PY) scripts/layer_requirements.py

lock: $(STAMP) ## re-pin constraints.txt from the current venv (after changing pyproject.toml)
	$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean: ## remove build output and caches (keeps .venv)
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov .mutation
