"""The balancer's certificate-metrics script: what the certificate expiry alert reads, since HAProxy 2.6's exporter
has no certificate expiry.

Run for real on certificates made here with a known notAfter: the file holds each served certificate's notAfter in
Unix time under the name HAProxy serves it by, is replaced only when that changes (the role's changed_when reads the
script's "changed"), and a file that is no certificate leaves the previous figures in place.
"""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import REPO

SCRIPT = REPO / "roles" / "balancer" / "files" / "certificate-metrics"
METRIC = "wsgiops_balancer_certificate_expiry_timestamp_seconds"


def _pem(name: str, not_after: datetime.datetime) -> str:
    """A self-signed certificate for NAME expiring at NOT_AFTER, with its key, as HAProxy reads them (one PEM file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=90))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode() + key_pem.decode()


def _run(certs: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), str(certs), str(output)], capture_output=True, text=True, check=False)


def _samples(output: Path) -> dict[str, int]:
    """certificate label -> value, from the exposition text (checked line by line as node_exporter would parse it)."""
    samples = {}
    for line in output.read_text().splitlines():
        if line.startswith("#"):
            assert line in (f"# TYPE {METRIC} gauge",) or line.startswith(f"# HELP {METRIC} "), line
            continue
        series, value = line.rsplit(" ", 1)
        assert series.startswith(METRIC + '{certificate="') and series.endswith('"}'), line
        samples[series[len(METRIC) + len('{certificate="') : -2]] = int(value)
    return samples


def test_each_served_certificate_s_expiry_is_written_and_rewritten_only_when_it_changes(tmp_path: Path) -> None:
    certs, output = tmp_path / "certs", tmp_path / "node-exporter" / "wsgiops_balancer_certificates.prom"
    certs.mkdir()
    shop = datetime.datetime(2031, 5, 17, 8, 30, 0, tzinfo=datetime.UTC)
    www = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    (certs / "shop.example.com.pem").write_text(_pem("shop.example.com", shop))
    (certs / "www.example.com.pem").write_text(_pem("www.example.com", www))
    (certs / "README").write_text("not served: HAProxy serves *.pem only\n")

    first = _run(certs, output)
    assert (first.returncode, first.stdout) == (0, "changed\n"), first.stderr
    assert _samples(output) == {"shop.example.com": int(shop.timestamp()), "www.example.com": int(www.timestamp())}
    assert oct(output.stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in output.parent.iterdir()] == [output.name]  # no temporary file left behind

    again = _run(certs, output)
    assert (again.returncode, again.stdout) == (0, ""), again.stderr

    renewed = datetime.datetime(2031, 8, 15, 8, 30, 0, tzinfo=datetime.UTC)
    (certs / "shop.example.com.pem").write_text(_pem("shop.example.com", renewed))
    (certs / "www.example.com.pem").unlink()
    third = _run(certs, output)
    assert (third.returncode, third.stdout) == (0, "changed\n"), third.stderr
    assert _samples(output) == {"shop.example.com": int(renewed.timestamp())}


def test_no_certificate_yet_writes_the_metric_s_header_alone(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    output = tmp_path / "out.prom"
    result = _run(tmp_path / "certs", output)
    assert result.returncode == 0, result.stderr
    assert _samples(output) == {}


def test_a_file_that_is_no_certificate_keeps_the_previous_figures(tmp_path: Path) -> None:
    certs, output = tmp_path / "certs", tmp_path / "out.prom"
    certs.mkdir()
    expiry = datetime.datetime(2031, 5, 17, tzinfo=datetime.UTC)
    (certs / "shop.example.com.pem").write_text(_pem("shop.example.com", expiry))
    assert _run(certs, output).returncode == 0
    (certs / "broken.pem").write_text("-----BEGIN PRIVATE KEY-----\nTHE-KEY\n-----END PRIVATE KEY-----\n")
    result = _run(certs, output)
    assert result.returncode == 1 and "broken.pem: holds no certificate" in result.stderr, result.stderr
    assert "THE-KEY" not in result.stdout + result.stderr
    assert _samples(output) == {"shop.example.com": int(expiry.timestamp())}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
