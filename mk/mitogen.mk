# Mitogen for Ansible (requirements/tooling.txt): Ansible's own strategy starts a new Python on the host for every
# module run, about 4 s each on a TCG lab VM; Mitogen's strategy keeps one interpreter per host for the whole run.
# The lab's own runs use it: `make demo`, `make test-container` (converge, idempotence and the verify suite under
# it) and `make bench-provision` (which measures it beside Ansible's own strategy). Every other tier runs Ansible's
# own linear strategy, as a user's plain ansible-playbook does. MITOGEN=0 turns it off here.
MITOGEN ?= 1
# The directory is asked of the venv by the shell, when the line runs: make expands a whole recipe before its first
# line, and `make demo` creates the venv in an earlier line of its own recipe.
MITOGEN_STRATEGY_DIR := "$$($(BIN)/python -c 'import ansible_mitogen.plugins.strategy as s; print(s.__path__[0])')"
WITH_MITOGEN := $(if $(filter 1,$(MITOGEN)),ANSIBLE_STRATEGY_PLUGINS=$(MITOGEN_STRATEGY_DIR) ANSIBLE_STRATEGY=mitogen_linear)
