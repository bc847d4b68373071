"""The request-parsing case matrix: what RFC 9112 / RFC 9110 say a server must refuse, and what it must still accept.

Each case is raw bytes on a fresh connection and the answer the patched Meinheld must give. A refusal is one response
with that status and ``Connection: close``, then the end of the connection (nothing more is answered on it, so bytes
a front end saw as a second request are never served). An acceptance is a 200 from ``/echo`` whose body is the request
body the app read, so a case also shows how the body was framed.

Sources: RFC 9112 sections 2.2 (bare CR, whitespace before the first field), 3 (request line, HTTP-version), 3.2
(Host), 5.1 and 5.2 (field line syntax, obs-fold), 6.1 and 6.3 (Transfer-Encoding, Content-Length and their
combination), 7.1 (chunked syntax); RFC 9110 5.5 and 5.6.2 (field values, tokens) and 15.5.15/15.5.20/15.6.6 (414,
431, 505); the request-smuggling literature (CL.TE, TE.CL and TE.TE obfuscations); Gunicorn's own
tests/requests/invalid/ cases. ``GUNICORN_DIFFERENCES`` lists where Gunicorn's sync worker answers otherwise.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import socket
import time
from dataclasses import dataclass

# Gunicorn's defaults, which the patched worker takes from Gunicorn's settings of the same names.
LIMIT_REQUEST_LINE = 4094
LIMIT_REQUEST_FIELDS = 100
LIMIT_REQUEST_FIELD_SIZE = 8190
H = b"Host: localhost\r\n"


@dataclass(frozen=True)
class Case:
    """One request and the status the patched worker must answer (200: served, with ``body`` as the echo).

    ``cuts``: offsets where ``raw`` is split into separate writes (with a pause between, so the server reads each on
    its own): for what only goes wrong across two reads.
    """

    id: str
    raw: bytes
    status: int
    body: bytes = b""
    cuts: tuple[int, ...] = ()


def post(headers: bytes, body: bytes = b"", target: bytes = b"/echo") -> bytes:
    """A POST to ``target`` with Host, the given extra field lines and ``body`` (framing left to ``headers``)."""
    return b"POST " + target + b" HTTP/1.1\r\n" + H + headers + b"\r\n" + body


def get(headers: bytes = b"", line: bytes = b"GET /echo HTTP/1.1") -> bytes:
    """A GET with the given request line and extra field lines (Host first)."""
    return line + b"\r\n" + H + headers + b"\r\n"


CHUNKED = b"Transfer-Encoding: chunked\r\n"
CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"


def limit_cases(line: int, fields: int, field_size: int) -> list[Case]:
    """Each of Gunicorn's three request limits at its value (served) and one past it (414 / 431).

    The request line counts method, target and version with their spaces; a field line counts name ':' value (its
    OWS and CRLF not counted); the field count includes Host.
    """
    return [
        Case("request-line-at-limit", get(line=b"GET /echo?" + b"a" * (line - 19) + b" HTTP/1.1"), 200),
        Case("field-at-limit", get(b"X-Long: " + b"v" * (field_size - 7) + b"\r\n"), 200),
        Case("fields-at-limit", get(b"".join(b"X-F%d: v\r\n" % i for i in range(fields - 1))), 200),
        Case("request-line-over-limit", get(line=b"GET /echo?" + b"a" * (line - 18) + b" HTTP/1.1"), 414),
        Case("field-over-limit", get(b"X-Long: " + b"v" * (field_size - 6) + b"\r\n"), 431),
        Case("field-name-over-limit", get(b"X" * (field_size + 1) + b": v\r\n"), 431),
        Case("fields-over-limit", get(b"".join(b"X-F%d: v\r\n" % i for i in range(fields))), 431),
    ]


CASES: list[Case] = [
    # --- what must still be served
    Case("plain-get", get(), 200),
    Case("http10-no-host", b"GET /echo HTTP/1.0\r\n\r\n", 200),
    Case("content-length", post(b"Content-Length: 5\r\n", b"hello"), 200, b"hello"),
    Case("chunked", post(CHUNKED, CHUNKS), 200, b"hello"),
    Case("chunked-upper-case", post(b"Transfer-Encoding: CHUNKED\r\n", CHUNKS), 200, b"hello"),
    Case("chunked-ows-around", post(b"Transfer-Encoding: \t chunked \t\r\n", CHUNKS), 200, b"hello"),
    Case("chunk-extension", post(CHUNKED, b"5;name=value\r\nhello\r\n0\r\n\r\n"), 200, b"hello"),
    Case("chunk-size-hex-upper", post(CHUNKED, b"A\r\n0123456789\r\n0\r\n\r\n"), 200, b"0123456789"),
    Case("chunk-trailer", post(CHUNKED, b"5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n"), 200, b"hello"),
    Case("value-tab-and-obs-text", get(b"X-Value: a\tb \xe9\r\n"), 200),
    Case("value-empty", get(b"X-Empty:\r\n"), 200),
    Case("name-all-tchars", get(b"!#$%&'*+-.^_`|~09AZaz: v\r\n"), 200),
    Case("http-1.2-is-1.x", get(line=b"GET /echo HTTP/1.2"), 200),
    # a read that ends inside a field name, the next starting with its colon (patch 0026; found by the fuzz tier)
    Case("read-ends-before-colon", get(), 200, cuts=(len(b"GET /echo HTTP/1.1\r\nHost"),)),
    # --- framing (RFC 9112 6.1, 6.3): ambiguous lengths are refused, never guessed
    Case("cl-te", post(b"Content-Length: 4\r\n" + CHUNKED, b"0\r\n\r\n" + SMUGGLED), 400),
    Case("te-cl", post(CHUNKED + b"Content-Length: 4\r\n", b"5c\r\n" + SMUGGLED + b"\r\n0\r\n\r\n"), 400),
    Case("te-xchunked", post(b"Transfer-Encoding: xchunked\r\n", CHUNKS), 501),
    Case("te-chunked-x", post(b"Transfer-Encoding: chunkedx\r\n", CHUNKS), 501),
    Case("te-identity", post(b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n", b"hello"), 400),
    Case("te-identity-alone", post(b"Transfer-Encoding: identity\r\n", b"hello"), 501),
    Case("te-gzip-chunked", post(b"Transfer-Encoding: gzip, chunked\r\n", CHUNKS), 501),
    Case("te-chunked-not-last", post(b"Transfer-Encoding: chunked, identity\r\n", CHUNKS), 400),
    Case("te-chunked-gzip", post(b"Transfer-Encoding: chunked, gzip\r\n", CHUNKS), 400),
    Case("te-chunked-twice", post(b"Transfer-Encoding: chunked, chunked\r\n", CHUNKS), 400),
    Case("te-duplicate-fields", post(CHUNKED + CHUNKED, CHUNKS), 400),
    Case("te-second-field-bogus", post(CHUNKED + b"Transfer-Encoding: x\r\n", CHUNKS), 400),
    Case("te-empty", post(b"Transfer-Encoding:\r\n", CHUNKS), 400),
    Case("te-comma-only", post(b"Transfer-Encoding: ,\r\n", CHUNKS), 400),
    Case("te-vertical-tab", post(b"Transfer-Encoding:\x0bchunked\r\n", CHUNKS), 400),
    Case("te-http10", b"POST /echo HTTP/1.0\r\n" + CHUNKED + b"\r\n" + CHUNKS, 400),
    Case("cl-twice-same", post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"), 400),
    Case("cl-twice-differ", post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"), 400),
    Case("cl-list", post(b"Content-Length: 5, 5\r\n", b"hello"), 400),
    Case("cl-plus", post(b"Content-Length: +5\r\n", b"hello"), 400),
    Case("cl-negative", post(b"Content-Length: -5\r\n", b"hello"), 400),
    Case("cl-hex", post(b"Content-Length: 0x5\r\n", b"hello"), 400),
    Case("cl-inner-space", post(b"Content-Length: 5 5\r\n", b"hello"), 400),
    Case("cl-trailing-garbage", post(b"Content-Length: 5x\r\n", b"hello"), 400),
    Case("cl-empty", post(b"Content-Length:\r\n", b"hello"), 400),
    Case("cl-overflow", post(b"Content-Length: 99999999999999999999999\r\n", b"hello"), 400),
    Case("cl-over-max-body", post(b"Content-Length: 1073741824\r\n", b"hello"), 413),
    # --- chunked syntax (RFC 9112 7.1)
    Case("chunk-size-overflow", post(CHUNKED, b"1" + b"0" * 16 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-not-hex", post(CHUNKED, b"xyz\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-0x", post(CHUNKED, b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-leading-space", post(CHUNKED, b" 5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-negative", post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-size-missing", post(CHUNKED, b"\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-data-too-long", post(CHUNKED, b"3\r\nhello\r\n0\r\n\r\n"), 400),
    Case("chunk-line-bare-cr", post(CHUNKED, b"5\rhello\r\n0\r\n\r\n"), 400),
    Case("chunk-ext-ctl", post(CHUNKED, b"5;a\x00b\r\nhello\r\n0\r\n\r\n"), 400),
    # --- field lines (RFC 9112 5.1, 5.2, 2.2; RFC 9110 5.5, 5.6.2)
    Case("space-before-colon", get(b"X-Name : v\r\n"), 400),
    Case("tab-before-colon", get(b"X-Name\t: v\r\n"), 400),
    Case("te-space-before-colon", post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"hello"), 400),
    Case("name-paren", get(b"X(Name): v\r\n"), 400),
    Case("name-at", get(b"X@Name: v\r\n"), 400),
    Case("name-slash", get(b"X/Name: v\r\n"), 400),
    Case("name-non-ascii", get(b"X-N\xe9me: v\r\n"), 400),
    Case("name-empty", get(b": v\r\n"), 400),
    Case("name-nul", get(b"X\x00Name: v\r\n"), 400),
    Case("no-colon", get(b"X-Name v\r\n"), 400),
    Case("value-nul", get(b"X-Value: a\x00b\r\n"), 400),
    Case("value-ctl-01", get(b"X-Value: a\x01b\r\n"), 400),
    Case("value-del", get(b"X-Value: a\x7fb\r\n"), 400),
    Case("value-bare-cr", get(b"X-Value: a\rb\r\n"), 400),
    Case("value-bare-cr-smuggle", get(b"X-Value: a\rTransfer-Encoding: chunked\r\n"), 400),
    Case("obs-fold", get(b"X-Value: a\r\n b\r\n"), 400),
    Case("obs-fold-tab", get(b"X-Value: a\r\n\tb\r\n"), 400),
    Case("whitespace-before-first-field", b"GET /echo HTTP/1.1\r\n " + H + b"\r\n", 400),
    Case("host-missing-http11", b"GET /echo HTTP/1.1\r\n\r\n", 400),
    Case("host-twice", get(H), 400),
    # --- request line (RFC 9112 3, 2.3; RFC 9110 9.1)
    Case("method-non-token", get(line=b"G(T /echo HTTP/1.1"), 400),
    Case("method-empty", get(line=b" /echo HTTP/1.1"), 400),
    Case("two-spaces", get(line=b"GET  /echo HTTP/1.1"), 400),
    Case("target-space", get(line=b"GET /a b HTTP/1.1"), 400),
    Case("target-ctl", get(line=b"GET /a\x01b HTTP/1.1"), 400),
    Case("target-nul", get(line=b"GET /a\x00b HTTP/1.1"), 400),
    Case("target-del", get(line=b"GET /a\x7fb HTTP/1.1"), 400),
    Case("http09", b"GET /echo\r\n\r\n", 400),
    Case("version-lower-case", get(line=b"GET /echo http/1.1"), 400),
    Case("version-no-minor", get(line=b"GET /echo HTTP/1"), 400),
    Case("version-two-digit-minor", get(line=b"GET /echo HTTP/1.10"), 400),
    Case("version-two-digit-major", get(line=b"GET /echo HTTP/11.1"), 400),
    Case("version-leading-zero", get(line=b"GET /echo HTTP/01.1"), 400),
    Case("version-three-parts", get(line=b"GET /echo HTTP/1.1.1"), 400),
    Case("version-trailing-space", get(line=b"GET /echo HTTP/1.1 "), 400),
    Case("version-2", get(line=b"GET /echo HTTP/2.0"), 505),
    Case("version-3", get(line=b"GET /echo HTTP/3.0"), 505),
    Case("version-0", get(line=b"GET /echo HTTP/0.9"), 505),
    Case("request-line-bare-cr", b"GET /echo HTTP/1.1\r" + H + b"\r\n", 400),
    # --- limits (RFC 9110 15.5.15 414, RFC 6585 431; Gunicorn's limit_request_* defaults)
    *limit_cases(LIMIT_REQUEST_LINE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_FIELD_SIZE),
    Case("header-block-over-limit", get(b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 8000) for i in range(90))), 431),
]

# What goes wrong only for the request after it (state a refusal left in the worker): each sequence runs in order on
# one server, a fresh connection per case. A refused CONNECT left a Python exception set, and the next request, on
# any connection, was never answered (patch 0027; found by the fuzz tier).
SEQUENCES: dict[str, list[Case]] = {
    "connect-then-get": [
        Case("connect", b"CONNECT / HTTP/1.1\r\n" + H + b"\r\n", 400),
        Case("get-after-connect", get(), 200),
        Case("post-after-connect", post(b"Content-Length: 5\r\n", b"hello"), 200, b"hello"),
    ],
    "upgrade-then-get": [
        Case("upgrade-unknown", get(b"Connection: Upgrade\r\nUpgrade: foo\r\n"), 400),
        Case("get-after-upgrade", get(), 200),
    ],
}

# Where Gunicorn's sync worker (the reference) answers otherwise: case id -> (Gunicorn's status, why). Statuses are
# those of the Gunicorn pinned in roles/server/files/requirements.txt; 0 means no answer within the reference's
# timeout (it waits for a body it will never get). "stricter" / "laxer" is the patched Meinheld relative to Gunicorn.
GUNICORN_DIFFERENCES: dict[str, tuple[int, str]] = {
    "field-at-limit": (431, "equal: Gunicorn counts the field line with its CRLF, Meinheld name ':' value"),
    "te-identity-alone": (400, "equal in effect: Gunicorn says 400, Meinheld 501 (a coding it does not implement)"),
    "te-gzip-chunked": (200, "stricter: Gunicorn hands the app a gzip body it did not decode; Meinheld 501"),
    "te-second-field-bogus": (501, "equal in effect: 'chunked, x' is chunked-not-last, 400 here, 501 in Gunicorn"),
    "te-empty": (501, "equal in effect: an empty coding list is malformed (400) here, unknown (501) in Gunicorn"),
    "te-comma-only": (501, "equal in effect: as te-empty"),
    "cl-overflow": (0, "stricter: Gunicorn takes a 23-digit length and waits for the body; Meinheld 400"),
    "cl-over-max-body": (0, "stricter: Meinheld caps a body at 16 MiB (413 at once); Gunicorn has no cap and waits"),
    "chunk-size-overflow": (0, "stricter: Gunicorn takes a 17-hex-digit chunk size and waits; Meinheld 400"),
    "host-missing-http11": (200, "stricter: RFC 9112 3.2 says MUST 400; Gunicorn serves it"),
    "version-2": (400, "equal in effect: RFC 9110 15.6.6 505 here, 400 in Gunicorn"),
    "version-3": (400, "equal in effect: as version-2"),
    "version-0": (400, "equal in effect: as version-2"),
    "header-block-over-limit": (200, "stricter: Meinheld bounds the header block at 80 KiB; Gunicorn at 100 fields"),
}


@dataclass
class Answer:
    """What the server sent on one connection: the first response's status, head and body, and what followed."""

    status: int
    head: bytes
    body: bytes
    rest: bytes
    closed: bool


def exchange(port: int, raw: bytes, timeout: float = 5.0, cuts: tuple[int, ...] = ()) -> Answer:
    """Send ``raw`` on a fresh connection (split at ``cuts``), read the first response, then up to EOF or ``timeout``.

    A reset after the answer counts as the end: a server that closes with unread bytes in its receive queue (the
    smuggled part of a refused request) makes the kernel send RST instead of FIN, and that is still a close.
    """
    data = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each piece its own segment
        bounds = [0, *cuts, len(raw)]
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for number, (start, end) in enumerate(itertools.pairwise(bounds)):
                if number:
                    time.sleep(0.05)  # long enough for the server to read the piece before on its own
                s.sendall(raw[start:end])
        try:
            while True:
                part = s.recv(65536)
                if not part:
                    closed = True
                    break
                data += part
                if served_whole(data):
                    break
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/\d\.\d (\d{3})", head)
    status = int(match.group(1)) if match else 0
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    rest = b""
    if length and status == 200:
        body, rest = body[: int(length.group(1))], body[int(length.group(1)) :]
    return Answer(status, head, body, rest, closed)


def served_whole(data: bytes) -> bool:
    """True once a 200 with a Content-Length has arrived whole: an accepted request needs no wait for EOF."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not re.match(rb"HTTP/\d\.\d 200", head):
        return False
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return bool(length) and len(body) >= int(length.group(1))


def closes(answer: Answer) -> bool:
    """A refusal that says ``Connection: close`` and then sends nothing more."""
    said_close = re.search(rb"(?im)^connection: *close\s*$", answer.head) is not None
    return said_close and answer.closed and b"HTTP/1." not in answer.body


def check_answer(case: Case, answer: Answer) -> None:
    """Assert that ``answer`` is what ``case`` expects: its status; a refusal closes after one answer, an acceptance
    echoes the body. Shared by the matrix tier and the sanitized tier, so both hold the worker to the same answers."""
    assert answer.status == case.status, f"{case.id}: got {answer.status}, head {answer.head[:200]!r}"
    if case.status == 200:
        assert answer.body == case.body, f"{case.id}: echoed {answer.body[:80]!r}"
    else:
        assert closes(answer), f"{case.id}: no Connection: close and EOF after {answer.head!r} + {answer.body[:200]!r}"
