"""The launcher + runtime config + Gunicorn + Meinheld, started for real on a loopback port."""

from __future__ import annotations

import json
import resource
import socket
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.conftest import HELLO, get
from tests.integration.runtime_venv import runtime_python


def test_example_app_served_by_meinheld_workers(launch) -> None:
    service = launch({"APP_DIR": str(REPO / "example_app"), "WEB_CONCURRENCY": "2"})
    status, body = get(service.url, time.monotonic() + 60)
    assert (status, body) == (200, HELLO)
    assert len(service.wait_for_workers(2)) == 2
    cmdline = Path(f"/proc/{service.process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"gunicorn" in cmdline  # the launcher exec'd Gunicorn in place: same PID, the unit's main process
    stderr = service.stop()
    assert "Using worker: egg:meinheld#gunicorn_worker" in stderr
    assert '"workers": 2' in stderr  # the resolved settings reach the log


def test_workers_follow_affinity(launch) -> None:
    service = launch({"APP_DIR": str(REPO / "example_app"), "WORKERS_PER_CORE": "3"}, ("taskset", "-c", "0"))
    assert get(service.url, time.monotonic() + 60)[0] == 200
    assert len(service.wait_for_workers(3)) == 3


def test_prestart_export_reaches_the_app(launch, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ['GREETING'].encode()]\n"
    )
    (tmp_path / "prestart.sh").write_text("export GREETING='set by prestart'\n")
    service = launch({"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "1"})
    assert get(service.url, time.monotonic() + 60) == (200, "set by prestart")


# Records each import of the app (the importing pid) and answers with what the worker's collector holds frozen.
PRELOAD_PROBE = """import gc, os
with open(os.environ["IMPORTS"], "a") as log:
    log.write(f"{os.getpid()}\\n")
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{os.getpid()} {gc.get_freeze_count()} {gc.isenabled()}".encode()]
"""


@pytest.mark.parametrize("preload", ["off", "on"])
def test_preload_imports_the_app_once_in_the_master_and_freezes_it(launch, tmp_path: Path, preload: str) -> None:
    """PRELOAD=on: one import, in the master, its objects frozen for the workers (whose collector is on again), and
    the marker the deploy role reads; off: one import per worker, as the image does, and no marker."""
    (tmp_path / "main.py").write_text(PRELOAD_PROBE)
    imports, runtime = tmp_path / "imports.log", tmp_path / "run"
    runtime.mkdir()
    env = {"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "2", "IMPORTS": str(imports), "PRELOAD": preload}
    service = launch({**env, "RUNTIME_DIRECTORY": str(runtime)})
    workers = service.wait_for_workers(2)
    assert len(workers) == 2
    answers = set()
    deadline = time.monotonic() + 60
    while len(answers) < 2 and time.monotonic() < deadline:  # keep-alive off per request: both workers answer
        answers.add(get(service.url, deadline)[1])
    check, *pids = [int(line) for line in imports.read_text().split()]
    assert check == service.process.pid, "the launcher's import check, before it execs Gunicorn"
    frozen = [int(answer.split()[1]) for answer in answers]
    assert all(answer.endswith(" True") for answer in answers), answers  # collection on in every worker
    if preload == "on":
        assert pids == [service.process.pid], "imported once, by the master"
        assert min(frozen) > 10000, frozen  # the app, Flask and Gunicorn, frozen before the fork
        assert (runtime / "preloaded").is_file()
    else:
        assert sorted(pids) == sorted(workers), "imported by each worker"
        assert max(frozen) == 0, frozen
        assert not (runtime / "preloaded").exists()


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"WORKERS_PER_CORE": "abc"}, "gunicorn_conf: WORKERS_PER_CORE='abc' is invalid"),
        ({"LOG_LEVEL": "loud"}, "gunicorn_conf: LOG_LEVEL='loud' is invalid"),
        ({"PORT": "99999"}, "gunicorn_conf: PORT='99999' is invalid"),
        ({"PRELOAD": "maybe"}, "gunicorn_conf: PRELOAD='maybe' is invalid"),
        ({"APP_MODULE": "missing_module:app"}, "start: APP_MODULE='missing_module:app' does not import"),
    ],
)
def test_bad_value_stops_the_start_with_one_line(launch, env: dict[str, str], line: str) -> None:
    service = launch({"APP_DIR": str(REPO / "example_app"), **env})
    assert service.process.wait(timeout=60) == 2
    messages = [text for text in service.stop().splitlines() if not text.startswith("start: exec ")]
    assert messages == [messages[0]]
    assert messages[0].startswith(line)


def test_runtime_python_is_not_the_test_runner() -> None:
    """The stack runs in its own venv, as on a host; the tooling venv must not leak into it."""
    assert runtime_python() != Path(sys.executable)


def _half_sent(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each send half a header block and then nothing (slowloris)."""
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\nX-Half: ")
        held.append(sock)
    return held


def test_half_sent_requests_time_out_and_lock_nobody_out(launch) -> None:
    """1,000 half-sent requests on one worker: another client is served meanwhile, and all 1,000 get a 408 and a close
    within HEADER_TIMEOUT + 5 s of being sent."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))  # the unit's LimitNOFILE, here
    service = launch({"APP_DIR": str(REPO / "example_app"), "WEB_CONCURRENCY": "1", "HEADER_TIMEOUT": "3"})
    assert get(service.url, time.monotonic() + 60)[0] == 200
    sent = time.monotonic()
    held = _half_sent(service.port, 1000)
    with urllib.request.urlopen(service.url, timeout=5) as response:  # a new connection, while the 1,000 wait
        assert (response.status, response.read().decode()) == (200, HELLO)
    outcomes: dict[str, int] = {}
    for sock in held:
        outcome = _outcome(sock, deadline=sent + 3 + 5)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        sock.close()
    assert outcomes == {"408, then closed": 1000}, outcomes


def _outcome(sock: socket.socket, deadline: float) -> str:
    """What a held connection got by the deadline: the status line's code and whether the server closed it."""
    data = b""
    try:
        while chunk := _recv_by(sock, deadline):
            data += chunk
    except TimeoutError:
        return f"{data[9:12].decode() or 'nothing'}, still open"
    except OSError:
        pass
    return f"{data[9:12].decode() or 'nothing'}, then closed"


def _recv_by(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    return sock.recv(4096)


def _client_seen(url: str, headers: dict[str, str]) -> dict[str, str]:
    """What the example app's /client says it believes of one request sent with HEADERS."""
    request = urllib.request.Request(url + "client", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


FORGED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("worker_class", "trusted", "seen"),
    [
        # The default trusts nobody, not even loopback (Gunicorn's own default would believe 127.0.0.1).
        ("meinheld", None, {"remote_addr": "127.0.0.1", "scheme": "http"}),
        ("sync", None, {"remote_addr": "127.0.0.1", "scheme": "http"}),
        ("meinheld", "127.0.0.0/8", {"remote_addr": "203.0.113.9", "scheme": "https"}),
        ("sync", "127.0.0.1", {"remote_addr": "203.0.113.9", "scheme": "https"}),
        # A peer outside the trusted networks: nothing believed.
        ("meinheld", "10.0.2.2", {"remote_addr": "127.0.0.1", "scheme": "http"}),
    ],
)
def test_forwarding_headers_are_believed_only_from_forwarded_allow_ips(
    launch, worker_class: str, trusted: str | None, seen: dict[str, str]
) -> None:
    env = {"APP_DIR": str(REPO / "example_app"), "WEB_CONCURRENCY": "1"}
    if worker_class == "sync":
        env["WORKER_CLASS"] = "sync"
    if trusted:
        env["FORWARDED_ALLOW_IPS"] = trusted
    service = launch(env)
    assert get(service.url, time.monotonic() + 60)[0] == 200
    assert _client_seen(service.url, FORGED) == seen
    assert _client_seen(service.url, {}) == {"remote_addr": "127.0.0.1", "scheme": "http"}
