# Images with Packer (packer/): the local qcow2 built from the lab's Debian 12 base, its boot test, and the template
# checks. Debian's Packer 1.6.6 needs a staged copy of the templates; packer/local.py does that (see its docstring).

APT_PACKAGES += packer qemu-system-x86 qemu-utils openssh-client cloud-image-utils
PACKER_LOCAL := PYTHONPATH=$(CURDIR) $(BIN)/python packer/local.py
IMAGE_DIR := $(CACHE)/packer/debian12
# What goes into the image: a change to any of these makes `test-image` rebuild it first.
IMAGE_INPUTS := $(shell find packer playbooks roles files example_app meinheld_build -type f \
	! -name '*.md' ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)

# `make image` bakes the patched Meinheld wheel the lab builds on this machine for Debian 12 guests (`python -m lab wheel
# debian12`, cached per patch series) instead of compiling it in the TCG guest, which was most of a 23-minute build;
# packer/local.py asks for it. The AMI sources (packer build packer/) still compile in their builder.

# test-image (the image rebuilt when its inputs changed, then booted with 1 and 2 vCPUs) passed from a clean clone in
# 32 min 53 s on the 2-core machine under load 5-15 from other VMs: venv and lab base image 4-5 min, wheel 30 s,
# packer build 23 min 15 s, boot test 5 min 10 s (12 passed). An idle machine is several times faster under TCG.
TEST_VM_TIERS += packer-check test-image

.PHONY: image packer-check test-image

packer-check: deps venv ## packer fmt -check, then validate every source (qemu, amazon-ebs x2) offline, no credentials
	$(PACKER_LOCAL) check

image: deps venv ## build the qemu image (Debian 12 + site.yml's roles) into .cache/packer/debian12; prints time and size
	$(PACKER_LOCAL) build

$(IMAGE_DIR)/build.json: $(IMAGE_INPUTS) | deps venv
	$(PACKER_LOCAL) build

test-image: deps venv $(IMAGE_DIR)/build.json ## boot the image (rebuilt if its inputs changed) with 1 and 2 vCPUs, no Ansible
	$(BIN)/pytest -s -m vm tests/image
