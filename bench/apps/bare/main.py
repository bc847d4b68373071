"""A bare WSGI app with the example app's answer: no framework, so its throughput is the server's own ceiling."""

from __future__ import annotations

from collections.abc import Callable, Iterable

BODY = b"Hello World from Flask"
HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))]


def app(environ: dict, start_response: Callable[..., object]) -> Iterable[bytes]:
    """Answer every request with the same bytes Flask's hello view sends, minus Flask."""
    start_response("200 OK", HEADERS)
    return [BODY]
