"""The WSGI app the Meinheld tests serve: each path provokes one of the behaviours the patch series fixes.

Plain WSGI (no framework), so a test venv needs only Gunicorn, greenlet and the Meinheld wheel under test.
"""

import contextvars
import json
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qs

import greenlet

MIB = 1024 * 1024
# What one request may leave behind for the next in a reused request greenlet: a context variable and an attribute.
REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")
StartResponse = Callable[[str, list[tuple[str, str]]], object]


def _param(environ: dict, name: str, default: float) -> float:
    """Read a numeric query parameter, so one app serves every size and delay the tests need."""
    values = parse_qs(environ.get("QUERY_STRING", "")).get(name)
    return float(values[0]) if values else default


class NoCloseBody:
    """A response iterable without close(): counts how often the server looks for one (each failed lookup reaches
    __getattr__), so a test can tell how many lookups a response costs."""

    close_lookups = 0

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        return iter([self.body])

    def __getattr__(self, name: str) -> object:
        if name == "close":
            NoCloseBody.close_lookups += 1
        raise AttributeError(name)


def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    """Route by path: / greets, /big sends MiB of data, /block holds the worker, /pid names the worker, /remote the
    peer, /nodelay tells whether the connection has TCP_NODELAY, /no-close answers without close() and /close-lookups
    counts how often the server looked for one, /state shows (and with ?set= leaves behind) per-request state,
    /error raises, /echo answers the request body it read (the parser tests see how a body was framed)."""
    path = environ.get("PATH_INFO", "/")
    if path == "/state":
        current = greenlet.getcurrent()
        seen = {"var": REQUEST_VAR.get(), "attr": getattr(current, "left_behind", "unset"), "greenlet": id(current)}
        values = parse_qs(environ.get("QUERY_STRING", "")).get("set")
        if values:
            REQUEST_VAR.set(values[0])
            current.left_behind = values[0]
        body = json.dumps(seen).encode()
    elif path == "/echo":
        body = environ["wsgi.input"].read()
    elif path == "/error":
        raise RuntimeError("the app failed")
    elif path == "/big":
        body = b"x" * int(_param(environ, "mib", 50) * MIB)
    elif path == "/block":
        # time.sleep blocks the whole event loop: the worker stops heartbeating, as a stuck request would.
        time.sleep(_param(environ, "seconds", 10))
        body = b"blocked\n"
    elif path == "/pid":
        body = f"{os.getpid()}\n".encode()
    elif path == "/no-close":
        body = b"no close()\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return NoCloseBody(body)
    elif path == "/close-lookups":
        body, NoCloseBody.close_lookups = f"{NoCloseBody.close_lookups}\n".encode(), 0
    elif path == "/remote":
        body = f"{environ['REMOTE_ADDR']} {environ['REMOTE_PORT']}\n".encode()
    elif path == "/nodelay":
        # the connection's own socket, through a duplicate of its fd (closing the duplicate leaves it open)
        with socket.socket(fileno=os.dup(environ["meinheld.client"].get_fd())) as conn:
            body = f"{conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)}\n".encode()
    else:
        body = b"Hello World from Meinheld\n"
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))])
    return [body]
