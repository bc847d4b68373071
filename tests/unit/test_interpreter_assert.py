"""The interpreter role's input check, run for real on localhost: pip index URLs (finding 9c of the security review).

A plain http:// index lets anyone on the network path serve other packages: refused unless its host is marked trusted
in interpreter_pip_trusted_hosts, with one message naming the variable and the value (credentials masked).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_server_assert import assert_play, run_play

PLAYBOOK = assert_play("interpreter")
REFUSED = "is refused: plain http://"


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, None),
        ({"interpreter_pip_index_url": "https://pypi.example.com/simple"}, None),
        ({"interpreter_pip_index_url": "http://pypi.lan/simple"}, "http://pypi.lan/simple (interpreter_pip_index_url"),
        (
            {"interpreter_pip_extra_index_urls": ["https://a.example/simple", "http://pypi.lan:8080/simple"]},
            'interpreter_pip_trusted_hosts: ["pypi.lan:8080"]',
        ),
        ({"interpreter_pip_index_url": "http://pypi.lan/simple", "interpreter_pip_trusted_hosts": ["pypi.lan"]}, None),
        (
            {"interpreter_pip_index_url": "http://pypi.lan:8080/simple", "interpreter_pip_trusted_hosts": ["pypi.lan"]},
            None,
        ),
        (
            {"interpreter_pip_index_url": "http://pypi.lan:8080/s", "interpreter_pip_trusted_hosts": ["pypi.lan:8080"]},
            None,
        ),
        (
            {"interpreter_pip_index_url": "http://pypi.lan/simple", "interpreter_pip_trusted_hosts": ["other.lan"]},
            REFUSED,
        ),
        ({"interpreter_pip_index_url": "http://ci:s3cret@pypi.lan/simple"}, "http://***@pypi.lan/simple"),
    ],
    ids=["defaults", "https", "http", "http-extra", "trusted", "trusted-any-port", "trusted-port", "other", "creds"],
)
def test_pip_index_check(tmp_path: Path, extra: dict[str, object], refused: str | None) -> None:
    result = run_play(tmp_path, PLAYBOOK, extra)
    output = result.stdout + result.stderr
    if refused is None:
        assert result.returncode == 0, output
    else:
        assert result.returncode != 0, output
        assert refused in output and REFUSED in output, output
        assert "s3cret" not in output
