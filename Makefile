# Relay: the two commands are `make demo` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
PYTHON ?= $(shell command -v python3.11 || command -v python3)

.PHONY: all deps venv demo test bench lint stack-up stack-down k8s-testenv

all: test

deps:
	@scripts/install-deps

$(STAMP): pyproject.toml
	@echo "== virtualenv $(VENV) (python: $(PYTHON))"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(VENV)/bin/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

# checkov (the compliance gate) pins versions that conflict with Prefect's dependencies (boto3,
# packaging), so it lives in a virtualenv of its own; relay/compliance.py finds it there.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-checkov-3

$(TOOLS_STAMP):
	@echo "== tools virtualenv $(TOOLS) (checkov)"
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install -q --upgrade pip
	@$(TOOLS)/bin/pip install -q 'checkov>=3.2,<4'
	@rm -f $(TOOLS)/.installed-* && touch $@

venv: deps $(STAMP) $(TOOLS_STAMP)

stack-up: venv
	@$(VENV)/bin/relay stack up

stack-down:
	@$(VENV)/bin/relay stack down

demo: stack-up
	@$(VENV)/bin/relay demo

k8s-testenv:
	@if command -v go >/dev/null 2>&1; then scripts/k8s-testenv build; \
	else echo "== Go not installed: the Kubernetes tests (those using the control_plane fixture) will be skipped; install Go >= 1.26 and run scripts/k8s-testenv build"; fi

test: venv
	@scripts/test $(PYTEST_ARGS)

bench: venv
	@scripts/install-deps --bench
	@RELAY_STACK_UP_ARGS='--sqlite --workers 1' scripts/with-stack bash -c '$(VENV)/bin/python bench/fleet.py $(FLEET_ARGS) && $(VENV)/bin/python bench/promotion.py $(PROMOTION_ARGS) && $(VENV)/bin/python bench/promotion.py --backend postgresql $(PROMOTION_ARGS) && $(VENV)/bin/python bench/overhead.py $(OVERHEAD_ARGS) && $(VENV)/bin/python bench/rollback.py $(BENCH_ARGS) && $(VENV)/bin/python bench/memory.py $(MEMORY_ARGS) && $(VENV)/bin/python bench/webhooks.py $(WEBHOOK_ARGS) && $(VENV)/bin/python bench/webhooks.py --backend postgresql $(WEBHOOK_ARGS) && $(VENV)/bin/python bench/replay.py && $(VENV)/bin/python bench/switch_back.py && $(VENV)/bin/python bench/switch_back.py --backend postgresql && $(VENV)/bin/python bench/scale_out.py $(SCALE_ARGS) && $(VENV)/bin/python bench/report.py'

lint: venv
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy
