# The local VM lab (lab/, python -m lab): Debian/Ubuntu systemd VMs under QEMU, `make demo`, molecule scenarios.

# What the lab's targets need (util-linux: unshare for the build roots); `make demo` installs only these (and the base).
LAB_PACKAGES := qemu-system-x86 qemu-utils mmdebstrap e2fsprogs openssh-client apt dpkg ca-certificates \
  debian-archive-keyring util-linux
APT_PACKAGES += $(LAB_PACKAGES)
LAB := $(BIN)/python -m lab
DIST ?= debian12
# Distributions of the VM scenario (molecule/default, MOLECULE_DISTRO) `make test-molecule` runs, one at a time.
MOLECULE_DISTROS ?= debian12 debian13 ubuntu2404 ubuntu2204
DEMO_VM := demo
# `lab wheel debian12` builds the demo guest's Meinheld wheel in a Debian 12 root (lab/roots.py; about 35 s the first
# time, cached in $(CACHE)/meinheld/lab/) instead of in the TCG guest (about 15 minutes), and points
# $(CACHE)/meinheld/lab/debian12-current at it: the demo host's server_meinheld_source in inventory/lab/hosts.yml, so
# `make demo` runs the README's plain `ansible-playbook playbooks/site.yml` and a rerun of it changes nothing. The
# molecule VM scenarios, `make image` and `make test-reliability` get their wheels the same way.

# test-lab is not in `make test`: test-image boots VMs with 1 and 2 vCPUs too, and checks much more in them.

.PHONY: demo down lab-image lab-status test-lab test-molecule

demo: ## boot the Debian 12 lab VM (2 vCPUs) and provision it with playbooks/site.yml, then show the app
	@[ "$$(id -u)" = 0 ] || { echo "make demo builds images with mmdebstrap, which needs root: run  sudo make demo" >&2; exit 1; }
	$(call apt_install,demo,$(APT_BASE) $(LAB_PACKAGES))
	@$(MAKE) --no-print-directory venv
	@echo ">> [1/4] base image debian12 (built once, about a minute; cached under $(CACHE)/lab/images)"
	$(LAB) image build debian12 >/dev/null
	@echo ">> [2/4] booting VM $(DEMO_VM): 2 vCPUs, SSH 127.0.0.1:2222, HTTP 127.0.0.1:8080 (30-90 s under TCG)"
	$(LAB) up $(DEMO_VM) --reuse --dist debian12 --cpus 2 --memory 2G --ssh-port 2222 --http-port 8080 >/dev/null
	@echo ">> [3/4] the patched Meinheld wheel for Debian 12's Python, then ansible-playbook playbooks/site.yml"
	$(LAB) wheel debian12 --path
	$(WITH_MITOGEN) $(BIN)/ansible-playbook playbooks/site.yml
	@echo ">> [4/4] the result"
	$(LAB) report $(DEMO_VM)
	@echo ">> try: curl http://127.0.0.1:8080/   stop it: make down"

down: ## stop the demo VM and delete its overlay
	$(LAB) down $(DEMO_VM)

lab-image: venv ## build (or reuse) the lab base image of DIST (debian12, debian13, ubuntu2404, ubuntu2204)
	$(LAB) image build $(DIST)

lab-status: venv ## list the lab VMs
	$(LAB) status

test-lab: ## boot lab VMs with 1 and 2 vCPUs (one at a time) and check nproc in each
	$(call apt_install,test-lab,$(APT_BASE) $(LAB_PACKAGES))
	@$(MAKE) --no-print-directory venv
	$(BIN)/pytest -m vm tests/lab

test-molecule: ## every molecule scenario on lab VMs, one at a time: converge, idempotence, verify
	$(call apt_install,test-molecule,$(APT_BASE) $(LAB_PACKAGES))
	@$(MAKE) --no-print-directory venv
	for d in $(MOLECULE_DISTROS); do echo ">> MOLECULE_DISTRO=$$d molecule test"; MOLECULE_DISTRO=$$d $(BIN)/molecule test; done
