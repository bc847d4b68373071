"""Start Gunicorn with the Meinheld worker on a loopback port and talk to it with raw sockets.

Raw sockets, not an HTTP library: the tests need a reader that reads slowly and exact control over when a request is
in flight.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Protocol

APP_DIR = Path(__file__).resolve().parent


class StackLike(Protocol):
    """What Gunicorn needs of conftest.Stack: the venv and the command that runs a program where it lives."""

    venv: Path

    def command(self, *argv: str) -> list[str]: ...


def free_port() -> int:
    """Ask the kernel for a free loopback port, so parallel runs and other engineers' servers never collide."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One Gunicorn master with the Meinheld worker, its log captured to a file the assertions can quote."""

    def __init__(self, stack: StackLike, log_path: Path, *options: str) -> None:
        """The stack, not its venv: the venv lives in a distribution's root and only stack.command runs it there."""
        self.venv = stack.venv
        self.wrap = stack.command
        self.port = free_port()
        self.log_path = log_path
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 30.0) -> None:
        cmd = [
            str(self.venv / "bin" / "python"),
            "-m",
            "gunicorn",
            "-k",
            "egg:meinheld#gunicorn_worker",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--chdir",
            str(APP_DIR),
            "--no-control-socket",
            "--log-level",
            "info",
            *self.options,
            "wsgi_app:app",
        ]
        cmd = self.wrap(*cmd)
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if self.get("/", timeout=2.0)[0] == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"gunicorn did not answer within {ready_timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_master(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def worker_pids(self) -> list[int]:
        """The master's children: Gunicorn's workers (the tests run one)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except FileNotFoundError:
            return []

    def wait_for_new_worker(self, old: int, timeout: float) -> int:
        """Wait until a worker other than `old` answers /pid, which proves it was respawned and serves."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                status, body = self.get("/pid", timeout=1.0)
                if status == 200 and int(body) != old:
                    return int(body)
            time.sleep(0.2)
        raise AssertionError(f"no new worker answered within {timeout}s (old pid {old}):\n{self.log()}")

    def connect(self, timeout: float) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        """One request on a fresh connection, the whole body read; the status code and the body."""
        with self.connect(timeout) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            data = recv_all(s)
        return parse_response(data)


def recv_all(s: socket.socket, rate: float | None = None, chunk: int = 65536, duration: float | None = None) -> bytes:
    """Read until EOF; with `rate` (bytes per second) read slowly, as a client on a poor link does.

    With `duration`, stop after that many seconds (a client that gives up), returning what arrived.
    """
    parts = []
    deadline = time.monotonic() + duration if duration else None
    while deadline is None or time.monotonic() < deadline:
        data = s.recv(chunk)
        if not data:
            break
        parts.append(data)
        if rate:
            time.sleep(len(data) / rate)
    return b"".join(parts)


def parse_response(data: bytes) -> tuple[int, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    if not match:
        raise OSError(f"not an HTTP response: {data[:200]!r}")
    return int(match.group(1)), body


class SlowReader(threading.Thread):
    """A client that requests `path` and reads the answer at `rate` bytes per second, in a thread of its own."""

    def __init__(self, server: Gunicorn, path: str, rate: float, duration: float | None = None) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.rate, self.duration = server, path, rate, duration
        self.status: int | None = None
        self.body_len = 0
        self.expected_len: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.server.connect(timeout=30) as s:
                s.sendall(f"GET {self.path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
                data = recv_all(s, rate=self.rate, chunk=16384, duration=self.duration)
            head = data.partition(b"\r\n\r\n")[0]
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            self.expected_len = int(match.group(1)) if match else None
            self.status, body = parse_response(data)
            self.body_len = len(body)
        except BaseException as exc:  # reported by complete() and summary()
            self.error = exc

    def complete(self) -> bool:
        """True when the whole announced body arrived with a 200."""
        return self.status == 200 and self.expected_len is not None and self.body_len == self.expected_len

    def summary(self) -> str:
        return f"status={self.status} body={self.body_len} expected={self.expected_len} error={self.error!r}"
