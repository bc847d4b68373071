"""gunicorn_jsonlog.py: one parseable JSON line per request, whatever the request carries."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import FILES, load_module


@pytest.fixture(scope="module")
def jsonlog() -> ModuleType:
    return load_module(FILES / "gunicorn_jsonlog.py")


def lines_of(jsonlog: ModuleType, tmp_path: Path, app, environ: dict) -> list[dict]:
    """Serve ENVIRON once through the wrapper writing to a file; the records it wrote."""
    log = tmp_path / "access.log"
    fd = jsonlog.open_log(str(log))
    try:
        with contextlib.suppress(RuntimeError):
            jsonlog.log_requests(app, fd, "shop")(environ, lambda status, headers, *exc_info: None)
    finally:
        os.close(fd)
    text = log.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def answer(status: str):
    def wsgi(environ, start_response):
        start_response(status, [])
        return [b""]

    return wsgi


def failing(environ, start_response):
    raise RuntimeError("the app failed")


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/", ""),
        ("/a\nb", ""),  # a decoded %0A: must not forge a second line
        ('/"quoted"\\', "x=1&y=\x00"),
        ("/\xe9t\xe9", "q=\u2028"),  # latin-1 bytes of a UTF-8 path, a line separator
    ],
)
def test_one_line_per_request_whatever_the_path(jsonlog: ModuleType, tmp_path: Path, path: str, query: str) -> None:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "203.0.113.9"}
    [record] = lines_of(jsonlog, tmp_path, answer("404 NOT FOUND"), environ)
    assert record["path"] == path
    assert record["query"] == query
    assert record["status"] == 404
    assert record["client"] == "203.0.113.9"
    assert record["app"] == "shop"
    assert record["method"] == "GET"
    assert 0 <= record["duration"] < 1
    assert record["time"].endswith("Z") and len(record["time"]) == len("2026-12-08T03:00:00.000Z")


def test_an_app_that_raises_is_logged_as_500(jsonlog: ModuleType, tmp_path: Path) -> None:
    [record] = lines_of(jsonlog, tmp_path, failing, {"REQUEST_METHOD": "POST", "PATH_INFO": "/x"})
    assert record["status"] == 500


def test_the_client_is_read_after_the_app(jsonlog: ModuleType, tmp_path: Path) -> None:
    """FORWARDED_ALLOW_IPS's wrapper rewrites REMOTE_ADDR inside the call: the line carries the rewritten one."""

    def forwarded(environ, start_response):
        environ["REMOTE_ADDR"] = "198.51.100.7"
        return answer("200 OK")(environ, start_response)

    [record] = lines_of(jsonlog, tmp_path, forwarded, {"REMOTE_ADDR": "10.0.0.2"})
    assert record["client"] == "198.51.100.7"


def test_the_journal_is_stdout(jsonlog: ModuleType) -> None:
    assert jsonlog.open_log("-") == 1
