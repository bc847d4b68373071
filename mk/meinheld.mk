# The patched Meinheld wheel (meinheld_build/): the published 1.0.2 sdist, verified, plus our patch series.
# `make meinheld-wheel PYTHON=/path/to/python3.X OUT=DIR` leaves exactly one meinheld-*.whl in DIR.

# Compiling the extension needs a C compiler and the interpreter's headers (Debian's python3 needs python3-dev) and
# python3-venv for the throwaway build env. No patch/git: build.py applies the series.
MEINHELD_PACKAGES := gcc libc6-dev python3-dev python3-venv
# The tier builds the distributions' roots (lab/roots.py): mmdebstrap, the Debian keyring, unshare; and it needs root.
# strace counts the syscalls per request of the throughput patches (load-independent, unlike req/s).
MEINHELD_TIER_PACKAGES := mmdebstrap debian-archive-keyring ca-certificates util-linux strace
APT_PACKAGES += $(MEINHELD_PACKAGES) $(MEINHELD_TIER_PACKAGES)

# The interpreter to build for (the wheel is specific to it) and where the wheel lands. Not `python3` from PATH:
# the Makefile puts the tooling venv first on PATH, and the wheel is for a target interpreter, not for the tooling.
PYTHON ?= /usr/bin/python3
OUT ?= $(CACHE)/meinheld/dist

.PHONY: meinheld-wheel test-meinheld

meinheld-wheel: ## build the patched Meinheld wheel for PYTHON=/path/to/python3.X into OUT=DIR (default .cache/meinheld/dist)
	$(PYTHON) meinheld_build/build.py --out "$(OUT)" --download-dir $(CACHE)/meinheld/downloads \
	  --constraint roles/server/files/requirements.txt

# The tier runs each CPython in the root of the distribution that ships it (lab/roots.py: Ubuntu 22.04 3.10, Debian 12
# 3.11, Ubuntu 24.04 3.12, Debian 13 3.13), built by mmdebstrap from their archives; the patched wheels are the lab's.
test-meinheld: venv ## patched Meinheld under Gunicorn on the distributions' CPython 3.10-3.13 in their roots, stock 1.0.2 as strict xfail (~3 min cached)
	$(call apt_install,test-meinheld,$(APT_BASE) $(MEINHELD_TIER_PACKAGES))
	$(BIN)/pytest tests/meinheld

TEST_VM_TIERS += test-meinheld

# The sanitized tier (tests/meinheld_fuzz/): the patched wheel rebuilt under AddressSanitizer + UBSan for the host's
# /usr/bin/python3 (cached per interpreter version and series, ~15 s to build), the parser matrix against it, then
# FUZZ_SECONDS of the parser fuzzer; a report, a crashed or restarted worker, or a hang fails it. No roots and no root:
# the parser is the same C on every interpreter. gcc 12's sanitizer runtimes are libasan8 and libubsan1 (Debian 12).
MEINHELD_FUZZ_PACKAGES := $(MEINHELD_PACKAGES) libasan8 libubsan1
APT_PACKAGES += libasan8 libubsan1
FUZZ_SECONDS ?= 300

.PHONY: test-meinheld-fuzz test-meinheld-fuzz-short

test-meinheld-fuzz: venv ## the patched parser under ASan + UBSan: the case matrix, then FUZZ_SECONDS=300 of fuzzing (~6 min)
	$(call apt_install,test-meinheld-fuzz,$(APT_BASE) $(MEINHELD_FUZZ_PACKAGES))
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(BIN)/pytest tests/meinheld_fuzz

# make test's share: the same tier with 45 s of fuzzing (~1.5 min), by a target-specific FUZZ_SECONDS that the tier
# inherits as this target's prerequisite (FUZZ_SECONDS=N on the command line still wins). In the host group, the shorter
# one (~30 min against the VM group's ~45): a loopback tier, and its 8 s hang bound has room beside the VMs' QEMU.
test-meinheld-fuzz-short: FUZZ_SECONDS = 45
test-meinheld-fuzz-short: test-meinheld-fuzz ## test-meinheld-fuzz with 45 s of fuzzing (~1.5 min), the budget make test runs

TEST_HOST_TIERS += test-meinheld-fuzz-short
