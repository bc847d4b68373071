# The suite's front door. `make demo` provisions the lab VM; `make test` runs every tier of tests.
# Each concern keeps its own targets in mk/*.mk; this file holds what they share.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# The interpreter of the controller venv (PYTHON stays free for `make meinheld-wheel PYTHON=...`): Debian's, which the
# README installs, not whatever python3 comes first on PATH (a pyenv shim would leak into every tier).
VENV_PYTHON ?= /usr/bin/python3
VENV := .venv
BIN := $(VENV)/bin
CACHE := .cache
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Debian packages the controller venv needs: installed before it, so `make check` needs nothing else.
APT_BASE := python3-venv git curl
# Debian packages the tests need; each mk/*.mk adds its own. `make deps` and `make test` install them all; a target that
# needs only its own (`make demo`) starts with $(call apt_install,TARGET,PACKAGES) instead of depending on deps.
APT_PACKAGES := $(APT_BASE)
# Test tiers `make test` runs after the quick gate (`check`: lint + unit), in two groups that run side by side: the
# VM group (QEMU under TCG: CPU-bound) and the host group (systemd containers and loopback: mostly waiting on Ansible
# and SSH). Each mk/*.mk appends its targets to one of them.
TEST_VM_TIERS :=
TEST_HOST_TIERS := test-integration

include $(sort $(wildcard mk/*.mk))

.PHONY: help deps deps-base venv lint check collection test test-vm-tiers test-host-tiers check-no-pyenv test-unit \
	test-integration clean

help: ## list the targets
	@grep -hE '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

# Installs the missing ones among PACKAGES; run by a non-root user, one line says what to run instead.
define apt_install
@missing=$$(for p in $(sort $(2)); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
if [ -z "$$missing" ]; then echo ">> Debian packages for $(1): all present"; \
elif [ "$$(id -u)" != 0 ]; then echo "make $(1) needs Debian packages:" $$missing "- run: sudo apt-get install" $$missing "(or sudo make $(1))" >&2; exit 1; \
else echo ">> apt-get install" $$missing; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
endef

deps: ## install the Debian packages the tests need (skips what is installed)
	$(call apt_install,deps,$(APT_PACKAGES))

deps-base:
	$(call apt_install,venv,$(APT_BASE))

venv: $(BIN)/.installed ## the controller venv with the pinned tooling

$(BIN)/.installed: requirements/tooling.txt | deps-base
	@echo ">> creating $(VENV) with the pinned tooling"
	$(VENV_PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/tooling.txt
	touch $@

lint: venv ## ruff, yamllint, ansible-lint (production), changelog fragments, playbook syntax, promtool on the alert rules
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

# The tiers run with pyenv out of reach (PATH without it, PYENV_ROOT and HOME at empty directories under .cache), so a
# test that needs an interpreter the README does not install fails here as on a fresh machine; check-no-pyenv proves
# the guard holds. HOME persists under .cache, so pip's and molecule's caches survive between runs.
empty :=
NO_PYENV_PATH := $(subst $(empty) $(empty),:,$(strip $(foreach d,$(subst :, ,$(PATH)),$(if $(findstring /.pyenv/,$(d)/),,$(d)))))
GUARD_HOME := $(CURDIR)/$(CACHE)/test-home
GUARD_PYENV := $(CURDIR)/$(CACHE)/no-pyenv
GUARDED := env -u PYENV_VERSION PYENV_ROOT=$(GUARD_PYENV) HOME=$(GUARD_HOME) PATH=$(NO_PYENV_PATH)

# The quick gate first (a broken commit fails in a minute), then the Debian packages, then both groups side by side
# (-O: each group's output comes out whole); `make test-vm-tiers` or `make test-host-tiers` runs one group alone.
test: venv ## every tier: check (lint + unit) first, then the VM and host groups side by side (pyenv hidden)
	mkdir -p $(GUARD_HOME) $(GUARD_PYENV)
	$(GUARDED) $(MAKE) --no-print-directory check-no-pyenv check
	$(MAKE) --no-print-directory deps
	$(GUARDED) $(MAKE) --no-print-directory -j2 -O test-vm-tiers test-host-tiers

# -j1: within a group, one tier after the other (the groups themselves run side by side under `make test`'s -j2).
# Each group reads its own /dev/null: a tool of one group that leaves its stdin non-blocking must
# not reach the other's ansible-playbook, which refuses to start on a non-blocking stdin (a CI run lost a tier so).
test-vm-tiers: venv ## the tiers that boot QEMU VMs, one after the other
	$(MAKE) --no-print-directory -j1 $(TEST_VM_TIERS) </dev/null

test-host-tiers: venv ## the tiers on systemd containers and loopback, one after the other
	$(MAKE) --no-print-directory -j1 $(TEST_HOST_TIERS) </dev/null

check-no-pyenv: ## fail if pyenv is reachable (on PATH, in ~/.pyenv or PYENV_ROOT, behind the venv): make test's guard
	@reached=$$(command -v pyenv; ls -d "$$HOME/.pyenv" "$${PYENV_ROOT:-$$HOME/.pyenv}/versions" 2>/dev/null; \
	  readlink -f $(BIN)/python | grep -F /.pyenv/ || true); \
	if [ -n "$$reached" ]; then echo "pyenv is reachable from the test tiers:" $$reached >&2; exit 1; fi; \
	echo ">> no pyenv: not on PATH, no ~/.pyenv, venv on $$(readlink -f $(BIN)/python)"

clean: ## remove the venv and caches (lab images included)
	rm -rf $(VENV) $(CACHE)
