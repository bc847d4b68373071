"""What the integration tests share: one launcher run of the real stack, started and always stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.procs import children_map, free_port
from tests.conftest import FILES
from tests.integration.runtime_venv import runtime_python

HELLO = "Hello World from Flask"


def get(url: str, deadline: float) -> tuple[int, str]:
    """GET url, retrying until the server listens or the deadline passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Service:
    """One launcher run: the process (which becomes Gunicorn's master) and its port."""

    def __init__(self, python: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        full_env = {"PATH": os.environ["PATH"], "HOST": "127.0.0.1", "PORT": str(self.port), **env}
        self.process = subprocess.Popen(
            [*prefix, str(python), str(FILES / "start.py")],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_for_workers(self, count: int, timeout: float = 60) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(workers := children_map().get(self.process.pid, [])) != count and time.monotonic() < deadline:
            time.sleep(0.2)
        return workers

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.stdout, stderr = self.process.communicate(timeout=60)
        return stderr


@pytest.fixture
def launch() -> Iterator:
    started: list[Service] = []

    def _launch(env: dict[str, str], prefix: tuple[str, ...] = ()) -> Service:
        service = Service(runtime_python(), env, prefix)
        started.append(service)
        return service

    yield _launch
    for service in started:
        service.stop()
