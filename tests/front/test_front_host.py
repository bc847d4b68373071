"""The front on a single host: site.yml with `front: true` and a certificate handed in, on a Debian 12 container.

    pytest tests/front --connection=ansible --ansible-inventory=INVENTORY --hosts=HOST   (make test-front)

The host is a systemd container (lab/container.py) reached through slirp4netns forwards from the controller's
loopback: its port 80 is forwarded by the lab, and this module adds forwards to its 443 and to the app's loopback
port 8000. From outside, HTTPS serves the app (verified against the test's own CA, over HTTP/2), plain HTTP redirects,
nothing answers on 8000, and the app sees the scheme https and the address HAProxy saw, not a forged one.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import container
from lab.paths import Layout
from tests.verify.conftest import EXAMPLE_DIR, HELLO, Site

NAME = "front.test"  # the certificate's name; curl --resolve sends it to the forwarded port
BACKEND_PORT = 8000  # the app's port behind the front (app_list's front_port unset: Gunicorn's default)
FORGED = "203.0.113.66"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A CA of the test's own and a certificate for NAME it signed: what an operator hands in (certificate + key)."""
    where = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", "/CN=front test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=where)  # fmt: skip
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={NAME}",
             "-keyout", "leaf.key", "-out", "leaf.csr", cwd=where)  # fmt: skip
    (where / "ext").write_text(f"subjectAltName=DNS:{NAME}\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
             "-extfile", "ext", "-out", "leaf.pem", cwd=where)  # fmt: skip
    pem = (where / "leaf.pem").read_text() + (where / "leaf.key").read_text()
    return {"ca": where / "ca.pem", "pem": pem, "key": (where / "leaf.key").read_text()}


def _variables(pki: dict[str, Any]) -> dict[str, Any]:
    return {
        "app_list": [{"name": "example", "path": str(EXAMPLE_DIR), "front": True}],
        "balancer_tls_certificates": [{"name": NAME, "pem": pki["pem"]}],
        "balancer_hsts_max_age": 300,
    }


@pytest.fixture(scope="module")
def fronted(site: Site, pki: dict[str, Any]) -> dict[str, Any]:
    """The host converged with the front, then converged again (nothing may change), and its ports from outside."""
    first = site.converge(_variables(pki))
    assert first.rc == 0, first.output[-6000:]
    again = site.converge(_variables(pki))
    assert again.rc == 0 and again.changed == 0, again.output[-6000:]
    assert pki["key"].splitlines()[1] not in first.output + again.output  # the private key is never printed
    return {"http": http_port(site), **{guest: forward(site, guest) for guest in (443, BACKEND_PORT)}}


def http_port(site: Site) -> int:
    """The controller's port the lab forwards to the host's port 80 (the inventory's lab_url)."""
    return int(str(site.hostvars()["lab_url"]).rsplit(":", 1)[1].split("/")[0])


def forward(site: Site, guest: int) -> int:
    """A new forward from a free port of the controller's loopback to the container's GUEST port; returns the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    container._forward(container.run_dir(Layout.default(), site.host_name) / "slirp.sock", port, guest)
    return port


def _curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True, text=True, check=False)


def _https(fronted: dict[str, Any], pki: dict[str, Any], path: str, *args: str) -> subprocess.CompletedProcess[str]:
    url = f"https://{NAME}:{fronted[443]}{path}"
    return _curl("--cacert", str(pki["ca"]), "--resolve", f"{NAME}:{fronted[443]}:127.0.0.1", *args, url)


def test_https_serves_the_app_over_http2_verified(fronted: dict[str, Any], pki: dict[str, Any]) -> None:
    done = _https(fronted, pki, "/", "--http2", "-D", "-", "-w", "\n%{http_version} %{http_code}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("\n2 200") and HELLO in done.stdout
    assert "strict-transport-security: max-age=300" in done.stdout.lower()


def test_tls_below_1_2_is_refused(fronted: dict[str, Any], pki: dict[str, Any]) -> None:
    assert _https(fronted, pki, "/", "--tlsv1.0", "--tls-max", "1.1").returncode != 0


def test_plain_http_redirects_to_https(fronted: dict[str, Any]) -> None:
    done = _curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", f"http://127.0.0.1:{fronted['http']}/x?y=1")
    code, location = done.stdout.split()
    assert code == "301" and location.startswith("https://") and location.endswith("/x?y=1"), done.stdout


def test_meinheld_is_not_reachable_from_outside(fronted: dict[str, Any], site: Site) -> None:
    # Through the forward to the app's port on the host's own address: no HTTP answer at all.
    done = _curl("-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{fronted[BACKEND_PORT]}/")
    assert done.stdout in ("", "000"), done
    # On the host: the app's socket listens on loopback only; HAProxy holds 80 and 443.
    answer = site.on_host("ss -Hltnp", timeout=60)
    assert answer is not None and answer[0] == 0
    listening = {line.split()[3]: line for line in answer[1].splitlines() if line.strip()}
    assert [address for address in listening if address.endswith(f":{BACKEND_PORT}")] == [f"127.0.0.1:{BACKEND_PORT}"]
    assert "haproxy" in listening["0.0.0.0:80"] and "haproxy" in listening["0.0.0.0:443"]


def test_the_app_sees_https_and_the_address_haproxy_saw(
    fronted: dict[str, Any], pki: dict[str, Any], site: Site
) -> None:
    done = _https(fronted, pki, "/client", "-H", f"X-Forwarded-For: {FORGED}", "-H", "X-Forwarded-Proto: http")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    # slirp4netns hands the container every forwarded connection from its gateway: that is the client HAProxy saw.
    route = site.on_host("ip -4 route show default", timeout=60)
    assert route is not None and route[0] == 0
    gateway = route[1].split()[2]
    assert seen == {"remote_addr": gateway, "scheme": "https"}


def test_the_front_refuses_ambiguous_framing(fronted: dict[str, Any], pki: dict[str, Any]) -> None:
    """Two Content-Length values: HAProxy answers 400 itself (request smuggling never reaches Meinheld)."""
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    request = f"POST / HTTP/1.1\r\nHost: {NAME}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    with (
        socket.create_connection(("127.0.0.1", fronted[443]), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        tls.sendall(request.encode())
        answer = tls.recv(4096).decode("latin-1")
    assert answer.startswith("HTTP/1.1 400"), answer[:200]


def test_the_front_refuses_headers_beyond_its_buffer(fronted: dict[str, Any]) -> None:
    """A 20 KiB header block over plain HTTP: HAProxy's error, not Meinheld's (its buffer is 16 KiB)."""
    with socket.create_connection(("127.0.0.1", fronted["http"]), timeout=20) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {NAME}\r\nX-Big: {'a' * 20480}\r\n\r\n".encode())
        answer = conn.recv(4096).decode("latin-1")
    assert answer.split(" ", 2)[1] in ("400", "431"), answer[:300]
