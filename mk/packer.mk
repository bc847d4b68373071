# Images with Packer (packer/): the local qcow2 built from the lab's Debian 12 base, its boot test, and the template
# checks. Debian's Packer 1.6.6 needs a staged copy of the templates; packer/local.py does that (see its docstring).

APT_PACKAGES += packer qemu-system-x86 qemu-utils openssh-client
PACKER_LOCAL := PYTHONPATH=$(CURDIR) $(BIN)/python packer/local.py
IMAGE_DIR := $(CACHE)/packer/debian12
# What goes into the image: a change to any of these makes `test-image` rebuild it first.
IMAGE_INPUTS := $(shell find packer playbooks roles files example_app meinheld_build -type f \
	! -name '*.md' ! -name '*.pyc' ! -path '*/__pycache__/*' 2>/dev/null)

# The image's Python is the lab's Debian 12 base's 3.11, the same as this Debian 12 controller's /usr/bin/python3, so
# `make image` bakes the patched Meinheld wheel built here (about a minute, once per patch series: its version names
# the series) instead of compiling it in the TCG guest (most of a 23-minute build). Same directory as `make demo`'s.
# The AMI sources (packer build packer/) still compile in their builder: its architecture and Python may differ.
IMAGE_WHEEL_DIR := $(DEMO_WHEEL_DIR)
# The build recipe: a failed wheel build stops it (the assignment carries the sub-make's status under `set -e`).
IMAGE_BUILD = wheel=$$($(MAKE) -s --no-print-directory image-wheel) && $(PACKER_LOCAL) build --meinheld-wheel "$$wheel"

TEST_TIERS += packer-check

.PHONY: image image-wheel packer-check test-image

image-wheel: ## print the path of the patched Meinheld wheel for /usr/bin/python3 (Debian 12), building it if missing
	@ls $(IMAGE_WHEEL_DIR)/meinheld-$$(/usr/bin/python3 meinheld_build/build.py --print-version)-*.whl 2>/dev/null \
	  || $(MAKE) -s --no-print-directory meinheld-wheel PYTHON=/usr/bin/python3 OUT=$(IMAGE_WHEEL_DIR) | tail -n 1

packer-check: deps venv ## packer fmt -check, then validate every source (qemu, amazon-ebs x2) offline, no credentials
	$(PACKER_LOCAL) check

image: deps venv ## build the qemu image (Debian 12 + site.yml's roles) into .cache/packer/debian12; prints time and size
	$(IMAGE_BUILD)

$(IMAGE_DIR)/build.json: $(IMAGE_INPUTS) | deps venv
	$(IMAGE_BUILD)

test-image: deps venv $(IMAGE_DIR)/build.json ## boot the image (rebuilt if its inputs changed) with 1 and 2 vCPUs, no Ansible
	$(BIN)/pytest -s -m vm tests/image
