"""Fixtures of the sanitized tier: one Gunicorn with the ASan + UBSan wheel on the host's /usr/bin/python3 per session.

The parser is C shared by every interpreter, so the host's CPython (Debian 12's 3.11) is enough here: no distribution
roots and no root, unlike tests/meinheld (whose conftest this folder keeps out of, for that reason).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meinheld_fuzz.sanitized import SanitizedServer, SanitizedStack, make_venv, sanitized_wheel


@pytest.fixture(scope="session")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SanitizedServer]:
    """The server every test of the tier talks to; its first worker must serve them all (a crash is a new PID)."""
    wheel = sanitized_wheel()
    venv = tmp_path_factory.mktemp("venv-asan") / "venv"
    make_venv(venv, wheel)
    reports = tmp_path_factory.mktemp("sanitizer-reports")
    server = SanitizedServer(SanitizedStack(venv, reports), reports / "gunicorn.log")
    server.start()
    yield server
    server.stop()


def pytest_report_header() -> list[str]:
    return ["meinheld sanitized tier: the patched wheel under ASan + UBSan, on /usr/bin/python3 (not instrumented)"]
