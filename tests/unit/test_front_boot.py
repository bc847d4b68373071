"""Certificates handed in at an instance's boot: the balancer role's boot unit script and the HTTPS lines it unlocks.

An image carries no certificate; cloud-init's write_files puts one in the boot inbox, and roles/balancer/files/
boot-certificates (run before HAProxy by wsgiops-boot-certificates.service) checks it with the role's own
check-certificate, installs it 0600 where HAProxy serves it and says so in the env file HAProxy's drop-in reads. These
tests run the real scripts and a real HAProxy (the distribution's, which `make test-bench` installs) on loopback:
the configuration the role renders for an image serves the boot certificate, and plain HTTP without one.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.unit.test_front import FRONT, render_by_ansible
from tests.unit.test_server_assert import run_play

FILES = REPO / "roles" / "balancer" / "files"
HAPROXY = shutil.which("haproxy")
needs_haproxy = pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (make test-bench installs it)")
NAME = "boot.test"
Starter = Callable[[dict[str, str]], None]  # starts HAProxy with these environment variables, returns once it listens


def _pem(where: Path) -> tuple[str, str]:
    """A self-signed certificate for NAME and its key: (the PEM handed in, the key's first body line)."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}", "-keyout", "k.pem", "-out", "c.pem"],
        cwd=where, check=True, capture_output=True,
    )  # fmt: skip
    key = (where / "k.pem").read_text()
    return (where / "c.pem").read_text() + key, key.splitlines()[1]


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / name for name in ("inbox", "certs", "run")}
    for path in (paths["inbox"], paths["certs"]):
        path.mkdir(mode=0o700)
    return {**paths, "env": paths["run"] / "boot-tls.env", "tmp": tmp_path}


def _boot(dirs: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    argv = [str(FILES / "boot-certificates"), *(str(dirs[k]) for k in ("inbox", "certs", "env"))]
    return subprocess.run([*argv, str(FILES / "check-certificate")], capture_output=True, text=True, check=False)


@needs_haproxy
def test_a_boot_certificate_is_checked_installed_0600_and_never_printed(dirs: dict[str, Path]) -> None:
    pem, key_line = _pem(dirs["tmp"])
    (dirs["inbox"] / f"{NAME}.pem").write_text(pem)
    (dirs["inbox"] / f"{NAME}.pem").chmod(0o644)  # whatever user-data said
    done = _boot(dirs)
    assert done.returncode == 0, done.stderr
    installed = dirs["certs"] / f"{NAME}.pem"
    assert installed.read_text() == pem and stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert list(dirs["inbox"].iterdir()) == []
    assert dirs["env"].read_text() == "WSGIOPS_BOOT_TLS=1\n"
    assert key_line not in done.stdout + done.stderr and f"{NAME}.pem installed" in done.stdout


@needs_haproxy
def test_a_bad_boot_certificate_is_refused_and_https_stays_off(dirs: dict[str, Path]) -> None:
    bad = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nSECRET-KEY-LINE\n"
    (dirs["inbox"] / "bad.pem").write_text(bad)
    done = _boot(dirs)
    assert done.returncode == 1 and "bad.pem refused" in done.stderr
    assert "SECRET-KEY-LINE" not in done.stdout + done.stderr
    assert list(dirs["certs"].iterdir()) == [] and not dirs["env"].exists()
    assert stat.S_IMODE((dirs["inbox"] / "bad.pem").stat().st_mode) == 0o600  # left, readable by root only


def test_no_boot_certificate_means_plain_http(dirs: dict[str, Path]) -> None:
    dirs["run"].mkdir()
    dirs["env"].write_text("WSGIOPS_BOOT_TLS=1\n")  # a previous boot's, with the certificate since removed
    done = _boot(dirs)
    assert done.returncode == 0 and not dirs["env"].exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def image_front(tmp_path: Path, dirs: dict[str, Path]) -> dict[str, object]:
    """The front's configuration as the role renders it for an image: no certificate yet, boot certificates on."""
    http, https = _free_port(), _free_port()
    extra = {
        **FRONT,
        "balancer_boot_certificates": True,
        "balancer_certs_dir": str(dirs["certs"]),
        "balancer_listen_address": "127.0.0.1",
        "balancer_listen_port": http,
        "balancer_https_port": https,
        "balancer_admin_socket": str(tmp_path / "admin.sock"),
        "balancer_stats_port": 0,
    }
    config = tmp_path / "haproxy.cfg"
    (tmp_path / "render").mkdir()
    config.write_text(render_by_ansible(tmp_path / "render", extra))
    return {"config": config, "http": http, "https": https}


@pytest.fixture
def running(image_front: dict[str, object], dirs: dict[str, Path]) -> Iterator[Starter]:
    started: list[subprocess.Popen[str]] = []

    def start(env: dict[str, str]) -> None:
        proc = subprocess.Popen(
            [str(HAPROXY), "-db", "-f", str(image_front["config"])],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        started.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(image_front["http"]))) == 0:
                    return
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.1)
        raise AssertionError("haproxy did not listen")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


def _http_status(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"GET /x HTTP/1.1\r\nHost: boot.test\r\nConnection: close\r\n\r\n")
        return conn.recv(4096).decode("latin-1").split("\r\n", 1)[0]


@needs_haproxy
def test_the_image_front_serves_the_boot_certificate(
    image_front: dict[str, object], dirs: dict[str, Path], running: Starter
) -> None:
    assert ".if defined(WSGIOPS_BOOT_TLS)" in image_front["config"].read_text()
    pem, _ = _pem(dirs["tmp"])
    (dirs["inbox"] / f"{NAME}.pem").write_text(pem)
    assert _boot(dirs).returncode == 0
    running(dict(line.split("=", 1) for line in dirs["env"].read_text().split()))
    context = ssl.create_default_context(cafile=str(dirs["certs"] / f"{NAME}.pem"))
    with (
        socket.create_connection(("127.0.0.1", int(image_front["https"])), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as tls,
    ):
        served = tls.getpeercert()
    assert dict(pair[0] for pair in served["subject"])["commonName"] == NAME
    assert _http_status(int(image_front["http"])).startswith("HTTP/1.1 301")  # the redirect is on with HTTPS


@needs_haproxy
def test_the_image_front_without_a_boot_certificate_serves_plain_http(
    image_front: dict[str, object], running: Starter
) -> None:
    running({})
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(image_front["https"]))) != 0  # no HTTPS listener
    assert _http_status(int(image_front["http"])).startswith("HTTP/1.1 503")  # no redirect; the app is not up here


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({"balancer_boot_certificates": True}, False),
        ({"balancer_tls_certificates": [{"name": NAME, "pem": "KEY-IN-THE-IMAGE"}]}, True),
        ({"balancer_acme_domains": ["shop.example.com"]}, True),
    ],
)
def test_the_image_build_refuses_a_baked_certificate(tmp_path: Path, extra: dict[str, object], refused: bool) -> None:
    """image.yml's first play: a certificate (or an ACME account) would be in every copy; boot certificates are not."""
    first_play = yaml.safe_load((REPO / "playbooks" / "image.yml").read_text())[0]
    result = run_play(tmp_path, yaml.safe_dump([{**first_play, "hosts": "localhost"}]), extra)
    assert (result.returncode != 0) is refused, result.stdout[-2000:]
    if refused:
        assert "Set balancer_boot_certificates=true instead" in " ".join(result.stdout.split())
