# The fleet (lab/fleet.py, roles/balancer, tests/fleet): three web hosts and one HAProxy host as systemd containers on
# one shared container tree (overlays), the balancer on http://127.0.0.1:8090/, rolling deploys under load through it.
#   make fleet             bring the fleet up and converge it (site.yml, all web hosts at once: nothing serves yet),
#                          then the lab's Prometheus on lb1 (lab/playbooks/prometheus.yml: every app, the balancer and
#                          node_exporter on every host, every 2 s); prints on its last lines Prometheus's URL, the
#                          balancer's HTTPS URL and the CA certificate that verifies it
#   make test-fleet        code deploy, settings change (restart), release failing its health check on web2, under
#                          load through the balancer; Prometheus counting the requests sent and seeing a drained
#                          backend; prints requests, failed requests, time per batch, scale table
#   make test-fleet-deploy the zero-failure code deploy alone (not in `make test`: see below)
#   make fleet-down        stop the fleet and remove its namespace
# The Meinheld wheel is built once on the controller (lab wheel, as the reliability tier does) and shipped to every
# web host; the fleet converges with forks, all hosts in parallel.

APT_PACKAGES += systemd-container slirp4netns mmdebstrap iproute2 util-linux openssh-client curl
FLEET := $(BIN)/python -m lab.fleet
FLEET_INVENTORY := inventory/fleet-lab
FLEET_URL := http://127.0.0.1:8090/
FLEET_HTTPS_URL := https://lb1.fleet.test:8443/
FLEET_CA := $(or $(LAB_HOME),$(CURDIR)/.cache/lab)/fleet-acme-root.pem
FLEET_PROMETHEUS_URL := http://127.0.0.1:9090/
FLEET_CURL := curl --cacert $(FLEET_CA) --resolve lb1.fleet.test:8443:127.0.0.1
FLEET_PYTEST := $(BIN)/pytest tests/fleet -p no:cacheprovider -s

# In make test's VM group (the shorter one; the fleet runs on containers and loopback): every rolling case, 13 min 4 s
# from a clean fleet under load average 11-15 (fleet up + converge 3 min 43 s). test-fleet-deploy is the first case
# alone, for a quicker look. With the lab's Prometheus (its play 24 s, its tests about 30 s): 6 min 42 s, 16 passed, on a
# quieter machine.
TEST_VM_TIERS += test-fleet

.PHONY: fleet fleet-up fleet-converge fleet-show fleet-down test-fleet test-fleet-deploy

fleet: fleet-up fleet-converge fleet-show ## three web hosts + one HAProxy host (containers); prints the balancer's URL

fleet-up: deps venv
	@echo ">> [1/3] the fleet: lb1, web1, web2, web3 on overlays of the cached container tree"
	$(FLEET) up >/dev/null

fleet-converge: venv
	@echo ">> [2/3] the lab's ACME server (Pebble on lb1), ansible-playbook -i $(FLEET_INVENTORY) playbooks/site.yml," \
	  "then the lab's Prometheus (lb1) and node_exporter (every host)"
	$(BIN)/ansible-playbook -i $(FLEET_INVENTORY) lab/playbooks/acme.yml
	wheel=$$($(LAB) wheel debian12 --path); test -n "$$wheel"; \
	time $(BIN)/ansible-playbook -i $(FLEET_INVENTORY) playbooks/site.yml -e deploy_serial=100% \
	  -e server_meinheld_source="$$wheel" -e interpreter_keep_build_deps=false
	time $(BIN)/ansible-playbook -i $(FLEET_INVENTORY) lab/playbooks/prometheus.yml

fleet-show:
	@echo ">> [3/3] $(FLEET_HTTPS_URL), six requests (X-Served-By names the web host that answered)"
	@for i in 1 2 3 4 5 6; do $(FLEET_CURL) -s -D - -o /tmp/fleet-body.$$$$ $(FLEET_HTTPS_URL) | tr -d '\r' \
	  | grep -i '^x-served-by' | tr '\n' ' '; cat /tmp/fleet-body.$$$$; echo; done; rm -f /tmp/fleet-body.$$$$
	@echo ">> plain HTTP ($(FLEET_URL)) redirects to HTTPS; stop the fleet: make fleet-down"
	@echo ">> Prometheus (on lb1; jobs apps, balancer, node, every 2 s): $(FLEET_PROMETHEUS_URL)"
	@echo ">> HTTPS: $(FLEET_HTTPS_URL) (lb1.fleet.test is 127.0.0.1:8443 here: curl --resolve lb1.fleet.test:8443:127.0.0.1)"
	@echo ">> the CA certificate that verifies it: $(FLEET_CA)"

fleet-down: venv ## stop the fleet's containers and remove its network namespace
	$(FLEET) down

test-fleet: deps venv ## rolling deploys through HAProxy under load: code, restart, a failing release; report + scale table
	trap '$(FLEET) down >/dev/null' EXIT; $(MAKE) --no-print-directory fleet && $(FLEET_PYTEST)

test-fleet-deploy: deps venv ## the zero-failure rolling code deploy through HAProxy (a fresh fleet, torn down after)
	trap '$(FLEET) down >/dev/null' EXIT; $(MAKE) --no-print-directory fleet && $(FLEET_PYTEST) -k "test_1 or test_2"
