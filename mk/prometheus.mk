# The Prometheus alert rules the collection ships (files/prometheus/alerts.yml): `promtool check rules` and
# `promtool test rules` against tests/prometheus/alerts_test.yml, in the quick gate (make lint; under a second).
# promtool is Debian's (the prometheus package), unpacked under .cache instead of installed: installing the package
# would also start a Prometheus server on this machine (port 9090), which nothing here wants. The .deb comes from
# the machine's apt sources (apt-get download), so it is the distribution's build, as the package would install it.

PROMTOOL_ROOT := $(CACHE)/promtool
PROMTOOL := $(PROMTOOL_ROOT)/usr/bin/promtool
PROMETHEUS_RULES := files/prometheus/alerts.yml
PROMETHEUS_RULE_TESTS := tests/prometheus/alerts_test.yml

.PHONY: lint-rules

lint: lint-rules

lint-rules: $(PROMTOOL) ## promtool check rules + test rules on the shipped alert rules
	$(PROMTOOL) check rules $(PROMETHEUS_RULES)
	$(PROMTOOL) test rules $(PROMETHEUS_RULE_TESTS)

# apt-get update only when the package lists do not know the package yet (a fresh machine).
$(PROMTOOL):
	@echo ">> promtool: Debian's prometheus package, unpacked under $(PROMTOOL_ROOT) (not installed: no server starts)"
	rm -rf $(PROMTOOL_ROOT).part && mkdir -p $(PROMTOOL_ROOT).part
	cd $(PROMTOOL_ROOT).part && { apt-get download -q prometheus || { apt-get update -qq && apt-get download -q prometheus; }; }
	dpkg-deb -x $(PROMTOOL_ROOT).part/prometheus_*.deb $(PROMTOOL_ROOT).part/root
	rm -rf $(PROMTOOL_ROOT) && mv $(PROMTOOL_ROOT).part/root $(PROMTOOL_ROOT) && rm -rf $(PROMTOOL_ROOT).part
	$(PROMTOOL) --version 2>&1 | sed -n 1p
	touch $@
