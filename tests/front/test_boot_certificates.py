"""An image's front on the container: no certificate at converge, one handed in at boot (balancer_boot_certificates).

Runs before test_front_host.py (name order). site.yml converges the host as an image build would (the front, the
boot unit, no certificate): plain HTTP serves the app and nothing listens on 443. Then the PEM is put where
cloud-init's write_files puts it and the boot order is replayed (the boot unit, then HAProxy): the file is installed
0600, HTTPS verifies against the test's CA and port 80 redirects, and the unit's journal names the file, never its key.
Real cloud-init and a real image boot are the image tier's (tests/image), not run here.
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from tests.front.test_front_host import NAME, _curl, _https, forward, http_port, pki  # noqa: F401 - pki: a fixture
from tests.verify.conftest import EXAMPLE_DIR, HELLO, Site

INBOX = "/etc/haproxy/certs.boot"
UNIT = "wsgiops-boot-certificates.service"


def _on_host(site: Site, script: str) -> str:
    answer = site.on_host(script, timeout=120)
    assert answer is not None and answer[0] == 0, answer
    return answer[1]


@pytest.fixture(scope="module")
def booted(site: Site, pki: dict[str, Any]) -> dict[str, Any]:  # noqa: F811 - pki is the imported fixture
    variables = {"app_list": [{"name": "example", "path": str(EXAMPLE_DIR), "front": True}],
                 "balancer_boot_certificates": True}  # fmt: skip
    converged = site.converge(variables)
    assert converged.rc == 0, converged.output[-6000:]
    http = http_port(site)
    before = _curl("-o", "-", "-w", "\n%{http_code}", f"http://127.0.0.1:{http}/")
    listening = _on_host(site, "ss -Hltn")
    # What user-data's write_files does, then the boot order: the boot unit, then HAProxy.
    pem = shlex.quote(pki["pem"])
    _on_host(site, f"umask 077; printf %s {pem} > {INBOX}/{NAME}.pem && systemctl restart {UNIT} haproxy.service")
    return {"http": http, "before": before, "listening_before": listening}


def test_without_a_certificate_the_front_serves_plain_http(booted: dict[str, Any]) -> None:
    assert booted["before"].stdout.endswith("\n200") and HELLO in booted["before"].stdout
    assert ":443 " not in booted["listening_before"]


def test_the_boot_certificate_lands_0600_and_is_never_logged(booted: dict[str, Any], site: Site, pki: dict) -> None:  # noqa: F811
    script = f"stat -c 'mode=%a owner=%U' /etc/haproxy/certs/{NAME}.pem; echo inbox=$(ls -A {INBOX} | wc -l)"
    found = _on_host(site, script)
    assert "mode=600 owner=root" in found and "inbox=0" in found, found
    journal = _on_host(site, f"journalctl -b -u {UNIT} --no-pager -o cat")
    assert f"{NAME}.pem installed" in journal and pki["key"].splitlines()[1] not in journal


def test_haproxy_serves_the_boot_certificate_and_redirects(booted: dict[str, Any], site: Site, pki: dict) -> None:  # noqa: F811
    port = forward(site, 443)
    done = _https({443: port}, pki, "/", "-w", "\n%{http_code}")
    assert done.returncode == 0 and done.stdout.endswith("\n200") and HELLO in done.stdout, done.stderr
    redirect = _curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{booted['http']}/")
    assert redirect.stdout == "301"
