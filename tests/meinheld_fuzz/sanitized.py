"""The patched wheel built under AddressSanitizer + UBSan, a venv with it, and Gunicorn run with the runtimes loaded.

Only the extension is instrumented: the host's /usr/bin/python3 (Debian 12's CPython 3.11) is not, so ASan's runtime
is preloaded into it (LD_PRELOAD; it must come first among the libraries, before the extension brings libasan in) and
UBSan's comes with the extension. libstdc++ is preloaded after it: greenlet is C++ and throws (internally, on a switch
that carries an exception), and ASan's __cxa_throw interceptor finds the real one only in a library loaded at its
start (else "CHECK failed: ... real___cxa_throw" kills the worker). Reports go to files (log_path; UBSan's reach
Gunicorn's log instead): the tier fails when any appears, and a worker aborted by one (abort_on_error,
halt_on_error) shows as a new worker PID.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from meinheld_build import build
from tests.meinheld.conftest import CACHE, SERVER_REQUIREMENTS, full_version
from tests.meinheld.harness import APP_DIR, Gunicorn
from tests.meinheld_fuzz.inputs import Input

HOST_PYTHON = Path("/usr/bin/python3")
BUILD_PY = Path(build.__file__).resolve()
# The flags. -O1 comes after the interpreter's -O2 and wins; NDEBUG stays (a release build's asserts, as
# shipped: picoev's known assert under load would abort otherwise, see the README's known limitations).
SANITIZE = "-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"
# No ASan redzones on the extension's stack frames: greenlet switches request greenlets by copying C stack slices to
# the heap and back, so the shadow of the stack goes stale (another greenlet's redzones where this one's locals are).
# With them, the first greenlet switch is a "stack-buffer-underflow" in greenlet's memcpy, and after a suppression of
# that, an snprintf into a fresh stack buffer is one; both false. Heap, global and UBSan checks stay.
STACK = "--param=asan-stack=0 -fno-sanitize-address-use-after-scope"
CPPFLAGS = f"{SANITIZE} {STACK}"
LDFLAGS = "-fsanitize=address,undefined"
# CPython leaks by design (interned objects, caches, and nothing freed at exit): leak reports would be noise, so
# detect_leaks=0. abort_on_error/halt_on_error: the first report kills the worker, which the tier sees as a new PID.
ASAN_OPTIONS = "detect_leaks=0:abort_on_error=1:halt_on_error=1"
UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1"
REPORT_GLOB = ("asan.*", "ubsan.*")
# UBSan's reports reach the worker's stderr (Gunicorn's log) here, log_path notwithstanding (gcc 12's runtimes with
# ASan preloaded): the log is scanned too.
SANITIZER_LINE = re.compile(r"runtime error: |ERROR: AddressSanitizer|SUMMARY: (Address|UndefinedBehavior)Sanitizer")


def runtime(name: str) -> str:
    """The path of gcc's libasan.so / libubsan.so (gcc prints the bare name when it has none: a missing package)."""
    path = subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True).stdout
    if not Path(path.strip()).is_absolute():
        raise AssertionError(f"gcc has no {name}: install libasan8 and libubsan1 (make deps)")
    return str(Path(path.strip()).resolve())


def sanitized_wheel(python: Path = HOST_PYTHON) -> Path:
    """Build (or reuse) the patched series under ASan + UBSan for ``python``; keyed by its version and the series.

    The flags are part of the key too (a FLAGS file beside the wheel): a change of them is a rebuild, not a stale hit.
    """
    version = full_version(lambda *argv: list(argv), str(python))
    out = CACHE / "wheels" / f"asan-{version}-{build.series_hash(build.read_series())[:16]}"
    stamp = out / "FLAGS"
    flags = f"CPPFLAGS={CPPFLAGS}\nLDFLAGS={LDFLAGS}\n"
    existing = sorted(out.glob("meinheld-*.whl"))
    if len(existing) == 1 and stamp.is_file() and stamp.read_text() == flags:
        return existing[0]
    env = {**os.environ, "CPPFLAGS": CPPFLAGS, "LDFLAGS": LDFLAGS}
    cmd = [str(python), str(BUILD_PY), "--out", str(out), "--download-dir", str(CACHE / "downloads")]
    subprocess.run([*cmd, "--constraint", str(SERVER_REQUIREMENTS)], check=True, env=env, stdout=subprocess.DEVNULL)
    stamp.write_text(flags)
    (built,) = out.glob("meinheld-*.whl")
    return built


def make_venv(venv: Path, wheel: Path, python: Path = HOST_PYTHON) -> None:
    """A fresh venv with the stack's lock (hash-checked, as the roles install it) and the sanitized wheel."""
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--require-hashes", "-r", str(SERVER_REQUIREMENTS)], check=True)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True)


@dataclass(frozen=True)
class SanitizedStack:
    """What harness.Gunicorn needs of a stack: the venv, and a command that runs with the sanitizer runtimes."""

    venv: Path
    reports: Path

    def command(self, *argv: str) -> list[str]:
        """``argv`` under env(1) with ASan preloaded and both runtimes writing their reports under ``reports``."""
        return [
            "env",
            f"LD_PRELOAD={runtime('libasan.so')}:{runtime('libstdc++.so.6')}",
            f"ASAN_OPTIONS={ASAN_OPTIONS}:log_path={self.reports / 'asan'}",
            f"UBSAN_OPTIONS={UBSAN_OPTIONS}:log_path={self.reports / 'ubsan'}",
            *argv,
        ]


class SanitizedServer:
    """Gunicorn + the sanitized worker with 2 s header/body timeouts; knows its first worker and its report files."""

    def __init__(self, stack: SanitizedStack, log_path: Path) -> None:
        self.stack = stack
        # request_timeouts_conf.py: 2 s for a header block and for a stalled body, so an input that leaves a request
        # unfinished without half-closing is answered (408) in seconds; --keep-alive 2 bounds an idle connection.
        options = ("--config", str(APP_DIR / "request_timeouts_conf.py"), "--keep-alive", "2")
        self.gunicorn = Gunicorn(stack, log_path, *options)
        self.worker = 0

    def start(self) -> None:
        self.gunicorn.start()
        pids = self.gunicorn.worker_pids()
        assert len(pids) == 1, f"expected one worker, got {pids}:\n{self.gunicorn.log()}"
        self.worker = pids[0]

    def stop(self) -> None:
        self.gunicorn.stop()

    @property
    def port(self) -> int:
        return self.gunicorn.port

    def reports(self) -> str:
        """Every sanitizer report so far, each file under its name (empty: none)."""
        files = sorted(p for pattern in REPORT_GLOB for p in self.stack.reports.glob(pattern))
        return "".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in files)

    def problems(self) -> str:
        """Why the server is not healthy ('' when it is): a report, a dead master, or a worker other than the first."""
        found = []
        if reports := self.reports():
            found.append(f"sanitizer reports:\n{reports}")
        if SANITIZER_LINE.search(self.gunicorn.log()):
            found.append("a sanitizer report in the Gunicorn log (the worker's stderr)")
        if not self.gunicorn.alive():
            found.append("the Gunicorn master exited")
        elif (pids := self.gunicorn.worker_pids()) != [self.worker]:
            found.append(f"worker {self.worker} is gone (workers now {pids}): it crashed or was restarted")
        if found:
            found.append(f"gunicorn log (tail):\n{self.gunicorn.log()[-4000:]}")
        return "\n".join(found)


STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n]*\r\n")


@dataclass(frozen=True)
class Outcome:
    """What one input got: the first status (0: none, the connection was closed unanswered), or why it failed."""

    status: int
    error: str = ""


def send(port: int, item: Input, hang: float) -> Outcome:
    """Write the input as its writes say, then read until the server closes; ``hang`` s without the close fail.

    The oracle: the server closes the connection within ``hang`` seconds (reset counts: a refusal with unread
    bytes), and what it sent, if anything, starts with a well-formed HTTP/1.x status line.
    """
    data = b""
    deadline = time.monotonic() + hang
    with socket.create_connection(("127.0.0.1", port), timeout=hang) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each write its own segment
        try:
            for chunk, pause in item.writes():
                s.sendall(chunk)
                if pause:
                    time.sleep(pause)
            if item.half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # EPIPE, ECONNRESET, ENOTCONN (at the shutdown)
            pass  # the server refused and closed before the rest arrived: read what it said
        try:
            while True:
                s.settimeout(max(deadline - time.monotonic(), 0.01))
                part = s.recv(65536)
                if not part:
                    break
                data += part
        except ConnectionResetError:
            pass
        except TimeoutError:
            return Outcome(_status(data), f"no close within {hang} s (hang); got {data[:300]!r}")
    if data and not STATUS_LINE.match(data):
        return Outcome(0, f"not an HTTP/1.x status line: {data[:300]!r}")
    return Outcome(_status(data))


def _status(data: bytes) -> int:
    match = STATUS_LINE.match(data)
    return int(match.group(1)) if match else 0


def get_ok(server: SanitizedServer) -> tuple[int, bytes]:
    """A plain GET on a fresh connection (the harness's own), after whatever came before."""
    with contextlib.suppress(OSError):
        return server.gunicorn.get("/", timeout=5.0)
    return 0, b""
