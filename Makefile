# The suite's front door. `make demo` provisions the lab VM; `make test` runs every tier of tests.
# Each concern keeps its own targets in mk/*.mk; this file holds what they share.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The interpreter of the controller venv (PYTHON stays free for `make meinheld-wheel PYTHON=...`).
VENV_PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Debian packages the controller venv needs (installed before it, so `make check` needs nothing else).
BASE_PACKAGES := python3-venv git curl
# Debian packages the tests need; each mk/*.mk adds its own.
APT_PACKAGES := $(BASE_PACKAGES)
# Test tiers `make test` runs in order; each mk/*.mk appends its targets. `check` (lint + unit) first: seconds.
TEST_TIERS := check test-integration

include $(sort $(wildcard mk/*.mk))

.PHONY: help deps deps-base venv lint check collection test test-unit test-integration clean

help: ## list the targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

deps: ## install the Debian packages the tests need (skips what is installed)
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(sort $(APT_PACKAGES))"

deps-base:
	@$(MAKE) --no-print-directory apt-install PACKAGES="$(BASE_PACKAGES)"

apt-install:
	@missing=$$(for p in $(PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo ">> apt-get install $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo ">> Debian packages: all present"; fi

venv: $(BIN)/.installed ## the controller venv with the pinned tooling

$(BIN)/.installed: requirements/tooling.txt | deps-base
	@echo ">> creating $(VENV) with the pinned tooling"
	$(VENV_PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/tooling.txt
	touch $@

lint: venv ## ruff, yamllint, ansible-lint (production), syntax-check of every playbook
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/antsibull-changelog lint
	for p in $(wildcard playbooks/*.yml); do $(BIN)/ansible-playbook --syntax-check "$$p"; done

test-unit: venv ## unit tests of every Python part (seconds)
	$(BIN)/pytest tests/unit

check: lint test-unit ## the quick gate: lint + unit tests (under two minutes on a warm venv)

collection: venv ## build the collection tarball (wsgiops-meinheld_gunicorn-VERSION.tar.gz) into build/
	$(BIN)/ansible-galaxy collection build --force --output-path build

test-integration: venv ## the launcher serving the example app with Gunicorn + Meinheld on loopback
	$(BIN)/pytest tests/integration

test: venv ## every tier, the quick gate first: check (lint + unit), integration, Meinheld, lab VMs, image
	$(MAKE) --no-print-directory $(TEST_TIERS)

clean: ## remove the venv and caches (lab images included)
	rm -rf $(VENV) $(CACHE)
