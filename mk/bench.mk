# Benchmarks (bench/): the served throughput of the suite's stack against its alternatives, scaling with cores, and
# provisioning times. The stacks' venvs (and the chart's matplotlib) live under $(CACHE)/bench/, never in $(VENV).

# wrk loads the servers; nginx fronts uWSGI and serves the static ceiling; HAProxy is the suite's front (the
# balancer role's configuration, bench/front.py); uWSGI and bjoern compile on install.
# Only the benchmark's targets install these (Debian starts nginx on port 80): not `make demo`.
BENCH_PACKAGES := wrk nginx haproxy libev-dev gcc python3-dev util-linux
APT_PACKAGES += $(BENCH_PACKAGES)

# Extra arguments for `make bench`, e.g. BENCH_ARGS="--only suite,uwsgi-nginx --rounds 5", or
# BENCH_ARGS="--baseline 0017 --only suite,suite-baseline,bjoern" (the suite beside its build of patches 0001-0017).
BENCH_ARGS ?=

.PHONY: bench bench-venvs bench-provision bench-render test-bench

bench: ## throughput per core (suite vs uWSGI+nginx, Meinheld stock, Gunicorn, bjoern, granian) + scaling -> bench/results/ (~12 min)
	$(call apt_install,bench,$(APT_BASE) $(BENCH_PACKAGES))
	@$(MAKE) --no-print-directory venv
	$(BIN)/python -m bench run $(BENCH_ARGS)

bench-venvs: venv ## build the benchmark's venvs under .cache/bench/ (cached, keyed by the pins)
	$(BIN)/python -m bench venvs

# Extra arguments for `make bench-provision`, e.g. BENCH_PROVISION_ARGS="--strategies mitogen --playbooks suite".
BENCH_PROVISION_ARGS ?=

bench-provision: ## converge, rerun, deploy: site.yml vs bench/reference.yml, Ansible's and Mitogen's strategy (~40 min)
	$(call apt_install,bench-provision,$(APT_BASE) $(LAB_PACKAGES))
	@$(MAKE) --no-print-directory venv
	$(BIN)/python -m bench provision $(BENCH_PROVISION_ARGS)

bench-render: venv ## rewrite bench/results/results.md and throughput.png from results.json
	$(BIN)/python -m bench render

test-bench: ## smoke run of the benchmark harness: every stack serves for a few seconds (~1.5 min)
	$(call apt_install,test-bench,$(APT_BASE) $(BENCH_PACKAGES))
	@$(MAKE) --no-print-directory venv
	$(BIN)/pytest tests/bench

# The smoke run joins `make test` (the unit tests of bench/ already run in test-unit).
TEST_VM_TIERS += test-bench
