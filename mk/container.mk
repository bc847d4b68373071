# The fast molecule tier (lab/container.py, python -m lab.container): Debian 12 as a systemd-nspawn container with
# slirp4netns networking instead of a TCG VM; converge, idempotence and the full tests/verify suite.

APT_PACKAGES += systemd-container slirp4netns mmdebstrap util-linux openssh-client debian-archive-keyring ca-certificates

# Green from a clean clone (empty .cache): venv + container tree 2 min 35 s, then the scenario 9 min (15.5 min under load).
TEST_HOST_TIERS += test-container

.PHONY: test-container container-rootfs

container-rootfs: venv ## build (or reuse) the cached Debian 12 container tree under .cache/lab/containers
	$(BIN)/python -m lab.container build

test-container: deps venv ## molecule scenario `container`: site.yml on a Debian 12 systemd container, idempotence, tests/verify
	$(WITH_MITOGEN) $(BIN)/molecule test -s container

# The host lock (roles/server entry points lock/unlock): two runs against one container, a killed run, a stale and a
# broken lock; short runs of the entry points, not a converge. 29-33 s with the container tree cached.
TEST_HOST_TIERS += test-lock

.PHONY: test-lock

test-lock: deps venv ## the host lock on a systemd container: a second run refused, dead and stale locks taken over
	$(BIN)/pytest tests/lock -p no:cacheprovider

# The front option (an app_list item's `front: true`, the balancer role's `front` entry point) on a single host: a
# Debian 12 systemd container converged by site.yml as an image would be (boot-time certificates: one put in the
# inbox, the boot order replayed), then with a certificate handed in, converged again (changed=0): HTTPS verified
# with the test's CA over HTTP/2, plain HTTP redirected, the app's loopback port unreachable from outside, the scheme
# and client address the app sees (tests/front). 10 tests in about 2 min with the container tree and wheel cached.
TEST_HOST_TIERS += test-front
FRONT_NAME := front

.PHONY: test-front

test-front: deps venv ## the front on a single-host container: HTTPS (curl --cacert), redirect, Meinheld on loopback only
	$(BIN)/python -m lab.container down $(FRONT_NAME) >/dev/null 2>&1 || true
	$(BIN)/python -m lab.container build && $(BIN)/python -m lab.container up $(FRONT_NAME) >/dev/null
	trap '$(BIN)/python -m lab.container down $(FRONT_NAME) >/dev/null' EXIT; \
	inventory=$$($(BIN)/python -m lab.container inventory $(FRONT_NAME)); wheel=$$($(LAB) wheel debian12 --path); \
	test -n "$$wheel"; \
	printf '{"server_meinheld_source": "%s", "interpreter_keep_build_deps": false}\n' "$$wheel" > $(CACHE)/front-vars.json; \
	export VERIFY_EXTRA_VARS=$(CURDIR)/$(CACHE)/front-vars.json; \
	$(WITH_MITOGEN) $(BIN)/pytest tests/front -p no:cacheprovider --connection=ansible --ansible-inventory="$$inventory" \
	  --hosts=$(FRONT_NAME)
