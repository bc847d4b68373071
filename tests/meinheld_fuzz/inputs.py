"""The parser fuzzer's inputs: requests made by grammar and by mutating the case matrix, and how they are sent.

Standard library only and deterministic: input ``i`` of seed ``s`` is drawn from its own ``random.Random(f"{s}:{i}")``,
so a failure is reproduced by its seed and index alone (``inputs.make(seed, index)``), whatever the time budget or the
inputs before it. Each input says how its bytes are cut into writes (and the pause after each), whether the client
half-closes after the last write (most do, so a request waiting for more bytes ends at once instead of at the
server's timeout) and which generator made it.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from tests.meinheld.parser_cases import CASES, LIMIT_REQUEST_FIELD_SIZE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE

# The app's paths that answer at once; /block, /big and /error would test the app, not the parser.
TARGETS = [b"/echo", b"/", b"/pid", b"/echo?a=b&c=%20d", b"/remote", b"*", b"http://localhost/echo", b"/%00%ff"]
METHODS = [b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE", b"FOO-BAR"]
VERSIONS = [b"HTTP/1.1"] * 24 + [b"HTTP/1.0"] * 6 + [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTP/1"]
TCHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
FIELD_NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"X-Fuzz", b"Accept"]
CODINGS = [b"chunked", b"CHUNKED", b"identity", b"gzip", b"chunked, chunked", b"gzip, chunked", b"xchunked", b""]
# The bytes a parser gets wrong most: line ends, NUL, whitespace, obs-fold, a colon, a DEL, obs-text, a comma.
SPECIAL = [b"\r", b"\n", b"\r\n", b"\x00", b" ", b"\t", b"\r\n ", b"\r\n\t", b":", b"\x7f", b"\xff", b",", b";"]
SPECIAL.append(b"\x0b")  # a vertical tab, which some parsers take for whitespace
# How many inputs a round sends at once, each on its own connection: mostly one (its failure is its own), now and then
# several, which the worker's loop interleaves.
ROUND_WIDTHS = [1] * 6 + [2, 3, 4]
MAX_INPUT = 96 * 1024  # past the 80 KiB header-block bound, small enough to send in milliseconds


@dataclass(frozen=True)
class Input:
    """One connection's worth of bytes, the write boundaries (offsets into data) and the pause after each write."""

    seed: int
    index: int
    kind: str
    data: bytes
    cuts: tuple[int, ...]
    pauses: tuple[float, ...]
    half_close: bool

    def writes(self) -> list[tuple[bytes, float]]:
        """The writes in order, each with the pause that follows it."""
        bounds = [0, *self.cuts, len(self.data)]
        return [(self.data[a:b], p) for (a, b), p in zip(itertools.pairwise(bounds), self.pauses, strict=True)]

    def reproducer(self) -> str:
        """What a failure report shows: enough to regenerate the input and to paste it into parser_cases.py."""
        shown = self.data if len(self.data) <= 2048 else self.data[:2048] + b"..."
        return (
            f"FUZZ_SEED={self.seed} input {self.index} ({self.kind}, {len(self.data)} bytes, {len(self.cuts) + 1} "
            f"writes, half_close={self.half_close}): {shown!r}"
        )


def _number(rng: random.Random) -> bytes:
    """A Content-Length or chunk-size-ish number: small, at a boundary, huge, signed or with junk."""
    return rng.choice(
        [
            str(rng.randint(0, 64)).encode(),
            str(rng.choice([2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**64, 16 * 1024 * 1024 + 1])).encode(),
            b"9" * rng.randint(17, 40),
            b"-" + str(rng.randint(0, 9)).encode(),
            b"+" + str(rng.randint(0, 9)).encode(),
            b"0x" + str(rng.randint(0, 9)).encode(),
            str(rng.randint(0, 9)).encode() + rng.choice(SPECIAL) + str(rng.randint(0, 9)).encode(),
            b"",
        ]
    )


def _token(rng: random.Random, alphabet: bytes = TCHARS, most: int = 12) -> bytes:
    return bytes(rng.choice(alphabet) for _ in range(rng.randint(1, most)))


def _value(rng: random.Random) -> bytes:
    """A field value: text with HTAB and obs-text, sometimes long (near the field-size limit), sometimes junk."""
    roll = rng.random()
    if roll < 0.05:
        return b"v" * (LIMIT_REQUEST_FIELD_SIZE + rng.randint(-12, 4))
    if roll < 0.08:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))
    return bytes(rng.choice(b"abcxyz0189 \t\x80\xe9=/,;") for _ in range(rng.randint(0, 24)))


def _chunked_body(rng: random.Random) -> bytes:
    """Chunks of random sizes (upper/lower hex, leading zeros, extensions, sizes that lie), a last chunk, trailers."""
    out = []
    for _ in range(rng.randint(0, 5)):
        size = rng.choice([0, 1, 5, 15, 16, 255, 256, 4096, rng.randint(1, 20000)]) if rng.random() < 0.95 else 0
        digits = f"{size:x}".encode()
        if rng.random() < 0.2:
            digits = digits.upper()
        if rng.random() < 0.1:
            digits = b"0" * rng.randint(1, 20) + digits
        if rng.random() < 0.1:
            digits = _number(rng)
        ext = b";" + _token(rng) + (b"=" + _token(rng) if rng.random() < 0.5 else b"") if rng.random() < 0.2 else b""
        data_len = size if rng.random() < 0.9 else max(0, size + rng.randint(-3, 3))
        out.append(digits + ext + b"\r\n" + b"x" * data_len + b"\r\n")
    if rng.random() < 0.9:
        out.append(b"0\r\n")
        out.extend(b"X-T" + _token(rng, most=4) + b": " + _value(rng) + b"\r\n" for _ in range(rng.randint(0, 2)))
        out.append(b"\r\n")
    return b"".join(out)


def grammar(rng: random.Random) -> bytes:
    """A request from the RFC 9112 grammar, each part now and then off the grammar."""
    sp = b" " if rng.random() < 0.97 else rng.choice([b"  ", b"\t", b"", b"\x00"])
    method = rng.choice(METHODS) if rng.random() < 0.97 else _token(rng, bytes(range(256)))
    target = rng.choice(TARGETS)
    if rng.random() < 0.05:
        target = b"/echo?" + b"a" * (LIMIT_REQUEST_LINE - 19 + rng.randint(-2, 2))
    version = rng.choice(VERSIONS)
    eol = b"\r\n" if rng.random() < 0.98 else rng.choice([b"\n", b"\r", b"\r\r\n"])
    lines = [method + sp + target + sp + version]
    fields: list[tuple[bytes, bytes]] = []
    if rng.random() < 0.97:
        fields.append((b"Host", b"localhost"))
    body = b""
    framing = rng.random()
    if framing < 0.35:
        body = _chunked_body(rng)
        fields.append((b"Transfer-Encoding", b"chunked" if rng.random() < 0.8 else rng.choice(CODINGS)))
    elif framing < 0.7:
        body = bytes(rng.choice(b"hello\r\n\x00") for _ in range(rng.randint(0, 64)))
        fields.append((b"Content-Length", str(len(body)).encode() if rng.random() < 0.8 else _number(rng)))
    if rng.random() < 0.04:  # both framings, or one twice
        fields.append((rng.choice([b"Content-Length", b"Transfer-Encoding"]), rng.choice([_number(rng), b"chunked"])))
    extra = rng.randint(0, 6) if rng.random() < 0.97 else LIMIT_REQUEST_FIELDS + rng.randint(-2, 2)
    for _ in range(extra):
        name = rng.choice(FIELD_NAMES) if rng.random() < 0.05 else b"X-" + _token(rng)
        fields.append((name, _value(rng)))
    rng.shuffle(fields)
    for name, value in fields:
        colon = b": " if rng.random() < 0.97 else rng.choice([b":", b" : ", b":\t", b"::", b""])
        lines.append(name + colon + value)
    return eol.join(lines) + eol + eol + body


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte-level edits: insert a special byte, flip, delete, duplicate or truncate a span, swap in a number."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(buf))
        op = rng.random()
        if op < 0.35:
            buf[pos:pos] = rng.choice(SPECIAL)
        elif op < 0.5 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op < 0.65:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op < 0.75:
            buf[pos:pos] = buf[pos : pos + rng.randint(1, 64)] * rng.randint(1, 32)
        elif op < 0.85:
            buf[pos:pos] = _number(rng)
        elif op < 0.9:
            del buf[pos:]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(buf[:MAX_INPUT])


def _one(rng: random.Random) -> tuple[str, bytes]:
    if rng.random() < 0.5:
        case = rng.choice(CASES)
        return f"mutated {case.id}", mutate(rng, case.raw)
    data = grammar(rng)
    return ("grammar+mutated", mutate(rng, data)) if rng.random() < 0.4 else ("grammar", data)


def make(seed: int, index: int) -> Input:
    """Input ``index`` of ``seed``: one request, or 2-4 pipelined on one connection (the last perhaps mutated)."""
    rng = random.Random(f"{seed}:{index}")
    if rng.random() < 0.2:
        parts = [grammar(rng) if rng.random() < 0.5 else rng.choice(CASES).raw for _ in range(rng.randint(2, 4))]
        if rng.random() < 0.5:
            parts[-1] = mutate(rng, parts[-1])
        kind, data = f"pipelined x{len(parts)}", b"".join(parts)
    else:
        kind, data = _one(rng)
    data = data[:MAX_INPUT]
    cuts: tuple[int, ...] = ()
    if len(data) > 1 and rng.random() < 0.5:
        cuts = tuple(sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 8)))))
    pauses = (*(rng.choice([0.0, 0.0, 0.001, 0.005, 0.02]) for _ in cuts), 0.0)
    return Input(seed, index, kind, data, cuts, pauses, half_close=rng.random() < 0.97)


def round_width(seed: int, index: int) -> int:
    """How many inputs the round that starts at input ``index`` sends at once (so FUZZ_SEED replays the rounds too)."""
    return random.Random(f"{seed}:{index}:round").choice(ROUND_WIDTHS)
