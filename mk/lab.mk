# The local VM lab (lab/, python -m lab): Debian/Ubuntu systemd VMs under QEMU, `make demo`, molecule scenarios.

APT_PACKAGES += qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client apt dpkg ca-certificates
LAB := $(BIN)/python -m lab
DIST ?= debian12
# Distributions of the VM scenario (molecule/default, MOLECULE_DISTRO) `make test-molecule` runs, one at a time.
MOLECULE_DISTROS ?= debian12 debian13 ubuntu2404 ubuntu2204
DEMO_VM := demo
# The demo guest runs Debian 12's Python 3.11, the same interpreter as this Debian 12 controller's /usr/bin/python3:
# `lab wheel` builds the Meinheld wheel here once (20 s to a minute, cached in $(CACHE)/meinheld/lab/) instead of in
# the TCG guest (about 15 minutes); on a controller that cannot build for the guest it prints nothing and says why,
# and the role builds in the guest. The molecule VM scenarios, `make image` and `make test-reliability` get their
# wheels the same way.

# The VM tier joins `make test` (green: two boots, about 3 min). test-molecule is added by the lead once the roles pass.
TEST_TIERS += test-lab

.PHONY: demo down lab-image lab-status test-lab test-molecule

demo: deps venv ## boot the Debian 12 lab VM (2 vCPUs) and provision it with playbooks/site.yml, then show the app
	@echo ">> [1/4] base image debian12 (built once, about a minute; cached under $(CACHE)/lab/images)"
	$(LAB) image build debian12 >/dev/null
	@echo ">> [2/4] booting VM $(DEMO_VM): 2 vCPUs, SSH 127.0.0.1:2222, HTTP 127.0.0.1:8080 (30-90 s under TCG)"
	$(LAB) up $(DEMO_VM) --reuse --dist debian12 --cpus 2 --memory 2G --ssh-port 2222 --http-port 8080 >/dev/null
	@echo ">> [3/4] the patched Meinheld wheel for Debian 12's Python, then ansible-playbook playbooks/site.yml"
	wheel=$$($(LAB) wheel debian12 --path) && \
	$(BIN)/ansible-playbook playbooks/site.yml $${wheel:+-e server_meinheld_source="$$wheel"}
	@echo ">> [4/4] the result"
	$(LAB) report $(DEMO_VM)
	@echo ">> try: curl http://127.0.0.1:8080/   stop it: make down"

down: ## stop the demo VM and delete its overlay
	$(LAB) down $(DEMO_VM)

lab-image: venv ## build (or reuse) the lab base image of DIST (debian12, debian13, ubuntu2404, ubuntu2204)
	$(LAB) image build $(DIST)

lab-status: venv ## list the lab VMs
	$(LAB) status

test-lab: deps venv ## boot lab VMs with 1 and 2 vCPUs (one at a time) and check nproc in each
	$(BIN)/pytest -m vm tests/lab

test-molecule: deps venv ## every molecule scenario on lab VMs, one at a time: converge, idempotence, verify
	for d in $(MOLECULE_DISTROS); do echo ">> MOLECULE_DISTRO=$$d molecule test"; MOLECULE_DISTRO=$$d $(BIN)/molecule test; done
