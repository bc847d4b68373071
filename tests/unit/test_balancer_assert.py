"""The balancer role's input check, run for real (ansible-playbook on localhost), for its HTTPS settings.

Each bad or hostile value is refused with its variable named before any task that changes a host, and the content of
a certificate handed in (its private key) never appears in the output, refused or not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_server_assert import assert_play, run_play

PLAYBOOK = assert_play("balancer")
# Localhost is the only host: the backends group is `all`.
BASE = {"balancer_backends_group": "all"}
KEY_MARK = "THIS-IS-THE-PRIVATE-KEY"
PEM = (
    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    f"-----BEGIN PRIVATE KEY-----\n{KEY_MARK}\n-----END PRIVATE KEY-----\n"
)


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, None),
        (
            {
                "balancer_acme_domains": ["shop.example.com", "www.shop.example.com"],
                "balancer_acme_email": "ops@example.com",
            },
            None,
        ),
        ({"balancer_tls_certificates": [{"name": "shop.example.com", "pem": PEM}], "balancer_hsts_max_age": 300}, None),
        ({"balancer_https_port": 0}, None),
        ({"balancer_acme_domains": ["*.example.com"]}, "balancer_acme_domains="),
        ({"balancer_acme_domains": ["exa mple.com"]}, "balancer_acme_domains="),
        ({"balancer_acme_domains": ["\u0661.example.com"]}, "balancer_acme_domains="),
        ({"balancer_acme_domains": "shop.example.com"}, "balancer_acme_domains="),
        ({"balancer_acme_domains": ["localhost"]}, "balancer_acme_domains="),
        ({"balancer_acme_email": "x;rm -rf /@example.com"}, "balancer_acme_email="),
        ({"balancer_acme_server": "http://acme.example.com/directory"}, "balancer_acme_server="),
        ({"balancer_acme_server": "https://acme.example.com/$(reboot)"}, None),  # an argv item, never a shell
        ({"balancer_acme_ca_bundle": "pebble.pem"}, "balancer_acme_ca_bundle="),
        ({"balancer_acme_ca_bundle": "/etc/../etc/passwd"}, "balancer_acme_ca_bundle="),
        (
            {"balancer_tls_certificates": [{"name": "../../etc/passwd", "pem": PEM}]},
            "balancer_tls_certificates is invalid",
        ),
        ({"balancer_tls_certificates": [{"name": "%i", "pem": PEM}]}, "balancer_tls_certificates is invalid"),
        ({"balancer_tls_certificates": [{"name": "a", "pem": PEM}, {"name": "a", "pem": PEM}]}, "each name unique"),
        ({"balancer_tls_certificates": [{"name": "a", "pem": KEY_MARK}]}, "balancer_tls_certificates is invalid"),
        ({"balancer_tls_certificates": [{"pem": PEM}]}, "balancer_tls_certificates is invalid"),
        (
            {
                "balancer_tls_certificates": [{"name": "shop.example.com", "pem": PEM}],
                "balancer_acme_domains": ["shop.example.com"],
            },
            "not the ACME name",
        ),
        ({"balancer_hsts_max_age": "1e9"}, "balancer_hsts_max_age="),
        ({"balancer_hsts_max_age": -1}, "balancer_hsts_max_age="),
        ({"balancer_https_redirect": "maybe"}, "argument 'balancer_https_redirect'"),
        ({"balancer_https_port": 70000}, "balancer_https_port=70000 is invalid"),
        ({"balancer_acme_port": 0}, "balancer_acme_port=0 is invalid"),
        ({"balancer_certs_dir": "certs"}, "balancer_certs_dir=certs is invalid"),
    ],
)
def test_https_input_is_checked_before_any_change(
    tmp_path: Path, extra: dict[str, object], refused: str | None
) -> None:
    result = run_play(tmp_path, PLAYBOOK, {**BASE, **extra})
    output = result.stdout + result.stderr
    if refused is None:
        assert result.returncode == 0, output[-3000:]
    else:
        assert result.returncode != 0 and refused in output, output[-3000:]
    assert KEY_MARK not in output


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, None),
        ({"balancer_metrics_bind": ""}, None),
        ({"balancer_metrics_bind": "10.0.1.5:9101"}, None),
        ({"balancer_metrics_bind": "[::1]:8405"}, None),
        ({"balancer_metrics_bind": "*:8405"}, None),
        ({"balancer_metrics_textfile_dir": ""}, None),
        ({"balancer_metrics_bind": "127.0.0.1"}, "balancer_metrics_bind=127.0.0.1 is invalid"),
        ({"balancer_metrics_bind": "8405"}, "balancer_metrics_bind=8405 is invalid"),
        ({"balancer_metrics_bind": "localhost:8405"}, "balancer_metrics_bind=localhost:8405 is invalid"),
        ({"balancer_metrics_bind": "256.0.0.1:8405"}, "balancer_metrics_bind=256.0.0.1:8405 is invalid"),
        ({"balancer_metrics_bind": "::1:8405"}, "balancer_metrics_bind=::1:8405 is invalid"),
        ({"balancer_metrics_bind": "127.0.0.1:0"}, "balancer_metrics_bind=127.0.0.1:0 is invalid"),
        ({"balancer_metrics_bind": "127.0.0.1:70000"}, "balancer_metrics_bind=127.0.0.1:70000 is invalid"),
        ({"balancer_metrics_bind": "127.0.0.1:8405 ssl crt /x"}, "balancer_metrics_bind=127.0.0.1:8405 ssl crt /x is"),
        ({"balancer_metrics_bind": "127.0.0.1:8405\n    stats enable"}, "balancer_metrics_bind="),
        # The balancer's own listeners: HAProxy would fail to start on a port bound twice (haproxy -c does not bind).
        ({"balancer_metrics_bind": "127.0.0.1:8404"}, "other listeners uses: 80, 443, 8404, 8402)"),
        ({"balancer_metrics_bind": "*:443"}, "balancer_metrics_bind=*:443 is invalid"),
        ({"balancer_metrics_bind": "127.0.0.1:8402"}, "balancer_metrics_bind=127.0.0.1:8402 is invalid"),
        ({"balancer_metrics_bind": "127.0.0.1:443", "balancer_https_port": 0}, None),
        ({"balancer_metrics_bind": 8405}, "balancer_metrics_bind=8405 is invalid"),
        ({"balancer_metrics_textfile_dir": "node-exporter"}, "balancer_metrics_textfile_dir=node-exporter is invalid"),
        ({"balancer_metrics_textfile_dir": "/var/lib/../tmp"}, "balancer_metrics_textfile_dir=/var/lib/../tmp is"),
    ],
)
def test_metrics_input_is_checked_before_any_change(
    tmp_path: Path, extra: dict[str, object], refused: str | None
) -> None:
    """Where HAProxy's exporter listens reaches its configuration as a `bind` line: anything but ADDRESS:PORT is
    refused by name, as is a port another of its listeners holds."""
    result = run_play(tmp_path, PLAYBOOK, {**BASE, **extra})
    output = result.stdout + result.stderr
    if refused is None:
        assert result.returncode == 0, output[-3000:]
    else:
        assert result.returncode != 0 and refused in output, output[-3000:]
