# Images with Packer (packer/): the local qcow2 built from the lab's Debian 12 base, its boot test, and the template
# checks. Debian's Packer 1.6.6 needs a staged copy of the templates; packer/local.py does that (see its docstring).

APT_PACKAGES += packer qemu-system-x86 qemu-utils openssh-client
PACKER_LOCAL := PYTHONPATH=$(CURDIR) $(BIN)/python packer/local.py
IMAGE_DIR := $(CACHE)/packer/debian12

.PHONY: image packer-check test-image

packer-check: deps venv ## packer fmt -check, then validate every source (qemu, amazon-ebs x2) offline, no credentials
	$(PACKER_LOCAL) check

image: deps venv ## build the qemu image (Debian 12 + site.yml's roles) into .cache/packer/debian12; prints time and size
	$(PACKER_LOCAL) build

test-image: deps venv ## boot the built image with 1 and 2 vCPUs (one at a time, no Ansible): workers, identity (builds it if missing)
	@test -f $(IMAGE_DIR)/build.json || $(MAKE) --no-print-directory image
	$(BIN)/pytest -m vm tests/image
