"""Gunicorn + the Meinheld worker, one interpreter at a time: each test is a defect of stock 1.0.2 the patches fix.

Every behaviour test runs against the patched wheel on CPython 3.10-3.13 and once against stock 1.0.2 (on 3.11,
where it still builds and imports), marked xfail(strict=True, raises=AssertionError): the stock run must fail, and
fail by assertion, or the suite no longer proves what the patches fix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.meinheld.harness import APP_DIR, Gunicorn, SlowReader

pytestmark = pytest.mark.meinheld

MIB = 1024 * 1024
MINORS = ("3.10", "3.11", "3.12", "3.13")


def _stock(minor: str, why: str) -> object:
    return pytest.param(
        ("stock", minor),
        marks=pytest.mark.xfail(strict=True, raises=AssertionError, reason=f"stock 1.0.2: {why}"),
        id=f"stock-{minor}",
    )


# The four patched builds alone: for guards that a patch keeps what stock already did right.
PATCHED = [pytest.param(("patched", m), id=f"patched-{m}") for m in MINORS]


def targets(stock_why: str) -> list[object]:
    """The four patched builds, plus stock 1.0.2 on 3.11 expected to fail for the stated reason."""
    return [*PATCHED, _stock("3.11", stock_why)]


def pid_of_worker(server: Gunicorn) -> int:
    status, body = server.get("/pid")
    assert status == 200, body
    return int(body)


@pytest.mark.parametrize("stack", targets("a slow reader spins the worker and stalls it"), indirect=True)
def test_slow_reader_does_not_delay_other_clients(stack: object, gunicorn: object) -> None:
    """While one client reads a 50 MiB answer slowly, another client of the same single worker is served at once."""
    server = gunicorn(stack, "--timeout", "60")
    reader = SlowReader(server, "/big?mib=50", rate=1 * MIB, duration=4)
    reader.start()
    time.sleep(1.0)  # the socket buffer is full by now: the worker must be waiting for the reader, not spinning
    assert reader.is_alive(), f"the slow read ended early: {reader.summary()}"
    for _ in range(3):
        started = time.monotonic()
        try:
            status, body = server.get("/", timeout=3)
        except OSError as exc:
            raise AssertionError(f"second client got no answer ({exc!r}) while the slow read ran") from exc
        elapsed = time.monotonic() - started
        assert status == 200, body
        assert elapsed < 1.0, f"second client waited {elapsed:.2f}s behind the slow reader"
        time.sleep(0.3)
    reader.join(10)
    assert reader.body_len > 0, reader.summary()
    assert "bad argument type" not in server.log(), server.log()


@pytest.mark.parametrize("stack", targets("--timeout never fires (ctime-only heartbeat)"), indirect=True)
def test_request_stuck_past_timeout_gets_worker_replaced(stack: object, gunicorn: object) -> None:
    """A request that blocks the worker longer than --timeout: the arbiter kills it, a new worker serves."""
    server = gunicorn(stack, "--timeout", "2")
    old = pid_of_worker(server)
    with server.connect(timeout=15) as stuck:
        stuck.sendall(b"GET /block?seconds=60 HTTP/1.0\r\n\r\n")
        new = server.wait_for_new_worker(old, timeout=12)
        assert stuck.recv(1024) == b"", "the stuck request was answered: the worker was not killed"
    assert new != old
    assert "WORKER TIMEOUT" in server.log()
    assert server.get("/")[0] == 200


@pytest.mark.parametrize(
    "stack", targets("the arbiter dies: _error() got an unexpected keyword 'exc_info'"), indirect=True
)
def test_master_survives_sigkill_of_worker(stack: object, gunicorn: object) -> None:
    """kill -9 of a worker (what the OOM killer does): the master survives, starts a new worker, which answers."""
    server = gunicorn(stack)
    old = pid_of_worker(server)
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and old in server.worker_pids():
        time.sleep(0.1)
    time.sleep(0.5)
    assert server.alive(), f"the master died after its worker was killed:\n{server.log()}"
    assert server.wait_for_new_worker(old, timeout=10) != old
    assert server.alive()
    assert "unexpected keyword argument" not in server.log(), server.log()


@pytest.mark.parametrize("stack", targets("SIGTERM cuts requests in flight after 1 s"), indirect=True)
def test_hup_reload_finishes_request_in_flight(stack: object, gunicorn: object) -> None:
    """HUP while an 8 MiB answer is being read slowly: that answer arrives whole, and a new worker serves."""
    server = gunicorn(stack, "--graceful-timeout", "20")
    old = pid_of_worker(server)
    reader = SlowReader(server, "/big?mib=8", rate=2 * MIB)
    reader.start()
    time.sleep(1.0)
    server.signal_master(signal.SIGHUP)
    reader.join(30)
    assert reader.complete(), f"the request in flight was cut by the reload: {reader.summary()}\n{server.log()}"
    assert server.wait_for_new_worker(old, timeout=10) != old


@pytest.mark.parametrize("stack", targets("SIGTERM cuts requests in flight after 1 s"), indirect=True)
def test_term_finishes_request_in_flight(stack: object, gunicorn: object) -> None:
    """TERM (graceful stop) while an 8 MiB answer is being read slowly: it arrives whole, then Gunicorn exits 0."""
    server = gunicorn(stack, "--graceful-timeout", "20")
    reader = SlowReader(server, "/big?mib=8", rate=2 * MIB)
    reader.start()
    time.sleep(1.0)
    server.signal_master(signal.SIGTERM)
    reader.join(30)
    assert reader.complete(), f"the request in flight was cut by TERM: {reader.summary()}\n{server.log()}"
    assert server.proc is not None
    assert server.proc.wait(timeout=20) == 0, server.log()


@pytest.mark.parametrize("stack", targets("a stop sent while a worker boots is lost"), indirect=True)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGQUIT], ids=["term", "quit"])
def test_stop_while_a_worker_boots_is_not_lost(stack: object, gunicorn: object, sig: int) -> None:
    """A stop that reaches a worker still booting stops it: Gunicorn exits at once, not graceful_timeout later."""
    server = gunicorn(stack, "--config", str(APP_DIR / "slow_boot_conf.py"), "--graceful-timeout", "30")
    first = pid_of_worker(server)
    server.signal_master(signal.SIGTTIN)  # a second worker, held 3 s in post_fork
    deadline = time.monotonic() + 10
    while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    booting = [pid for pid in server.worker_pids() if pid != first]
    assert booting, f"no second worker was started:\n{server.log()}"
    time.sleep(0.5)
    start = time.monotonic()
    server.signal_master(sig)
    assert server.proc is not None
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the booting worker {booting[0]} ignored the stop:\n{server.log()}") from None
    assert time.monotonic() - start < 10, server.log()


def _read_until_closed(sock: object, limit: float) -> tuple[bytes, float]:
    """Everything the server sent until it closed the connection, and how many seconds that took (at most `limit`)."""
    start, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        return data, limit
    return data, time.monotonic() - start


def _timeouts_server(gunicorn: object, stack: object) -> object:
    return gunicorn(stack, "--config", str(APP_DIR / "request_timeouts_conf.py"), "--keep-alive", "3")


@pytest.mark.parametrize("stack", targets("a header sent a byte at a time is never timed out"), indirect=True)
def test_header_dripped_a_byte_a_second_gets_408_at_the_header_timeout(stack: object, gunicorn: object) -> None:
    """Slowloris: a byte of header every second restarted the timer; the header deadline (2 s) does not move."""
    server = _timeouts_server(gunicorn, stack)
    with server.connect(5.0) as sock:
        start = time.monotonic()
        for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefgh":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # the server closed it
            if time.monotonic() - start > 8:
                break
            time.sleep(1.0)
        data, _ = _read_until_closed(sock, 3.0)
        took = time.monotonic() - start
    assert data.startswith(b"HTTP/1.1 408"), (data, took)
    assert took < 6, took


@pytest.mark.parametrize("stack", PATCHED, indirect=True)
def test_body_that_keeps_coming_is_not_cut_on_a_kept_alive_connection(stack: object, gunicorn: object) -> None:
    """A 10-byte body sent over 5 s (a byte every 0.5 s, never a 2 s stall) on a kept-alive connection is served.

    A guard of 0025: the header deadline must not cut a body that keeps coming (stock serves it too).
    """
    server = _timeouts_server(gunicorn, stack)
    with server.connect(10.0) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        for byte in b"0123456789":
            time.sleep(0.5)
            sock.sendall(bytes([byte]))
        data, _ = _read_until_closed(sock, 5.0)
    assert data.startswith(b"HTTP/1.1 200"), data
    assert data.endswith(b"0123456789"), data


@pytest.mark.parametrize("stack", targets("a stalled body is read until keep_alive, then answered 408"), indirect=True)
def test_body_that_stalls_gets_408_at_the_body_timeout(stack: object, gunicorn: object) -> None:
    """Half a body, then nothing: a 408 and a close 2 s (the body timeout) after the last byte, not later."""
    server = _timeouts_server(gunicorn, stack)
    with server.connect(10.0) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
        data, took = _read_until_closed(sock, 8.0)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert took < 3.5, took


@pytest.mark.parametrize("stack", PATCHED, indirect=True)
def test_idle_keep_alive_connection_is_closed_without_an_answer(stack: object, gunicorn: object) -> None:
    """After a served request, an idle connection is closed at the keep-alive timeout (3 s), with no 408 for nothing.

    A guard of 0025: the idle wait keeps KEEP_ALIVE, not the header deadline (stock does the same).
    """
    server = _timeouts_server(gunicorn, stack)
    with server.connect(10.0) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first
        data, took = _read_until_closed(sock, 8.0)
    assert data == b"", data
    assert 2 < took < 5, took


@pytest.mark.parametrize("stack", targets("max_requests is ignored"), indirect=True)
def test_max_requests_with_jitter_recycles_worker(stack: object, gunicorn: object) -> None:
    """--max-requests 3 --max-requests-jitter 2: each worker serves 3 to 5 requests, then a new one takes over."""
    server = gunicorn(stack, "--max-requests", "3", "--max-requests-jitter", "2")
    pids = [pid_of_worker(server) for _ in range(14)]  # the readiness probe in start() was request 1 of worker 1
    runs: list[int] = []
    for i, pid in enumerate(pids):
        if i and pid == pids[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    assert len(runs) >= 3, f"pids served in runs {runs}: the worker was not recycled"
    assert runs[0] + 1 in range(3, 6), runs
    assert all(n in range(3, 6) for n in runs[1:-1]), runs
    assert "Autorestarting worker" in server.log()


@pytest.mark.parametrize("stack", targets("pre_request/post_request never run"), indirect=True)
def test_pre_and_post_request_hooks_run(
    stack: object, gunicorn: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gunicorn's pre_request and post_request hooks run for each request, post after the answer with its status."""
    hooks_log = tmp_path / "hooks.log"
    monkeypatch.setenv("HOOKS_LOG", str(hooks_log))
    server = gunicorn(stack, "--config", str(APP_DIR / "hooks_conf.py"))
    assert server.get("/pid")[0] == 200
    assert server.get("/big?mib=1")[0] == 200
    lines = hooks_log.read_text().splitlines() if hooks_log.exists() else []
    assert lines[-4:] == ["pre GET /pid", "post GET /pid 200", "pre GET /big", "post GET /big 200"], lines


@pytest.mark.parametrize("stack", targets("pre_request never runs"), indirect=True)
def test_default_pre_request_logs_at_debug_level(stack: object, gunicorn: object) -> None:
    """With --log-level debug, Gunicorn's default pre_request logs each request: the fast path must not skip it."""
    server = gunicorn(stack, "--log-level", "debug")
    assert server.get("/pid")[0] == 200
    assert "[DEBUG] GET /pid" in server.log(), server.log()


@pytest.mark.parametrize("stack", targets("the loop never calls the worker's watchdog"), indirect=True)
def test_watchdog_wrapped_in_post_worker_init_runs_every_second(
    stack: object, gunicorn: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post_worker_init hook that wraps worker.watchdog (a memory limit would): the loop calls the wrapper about once
    a second, idle or serving, and the original still heartbeats, so --timeout 2 does not kill the idle worker."""
    watchdog_log = tmp_path / "watchdog.log"
    monkeypatch.setenv("WATCHDOG_LOG", str(watchdog_log))
    server = gunicorn(stack, "--config", str(APP_DIR / "watchdog_conf.py"), "--timeout", "2")
    old = pid_of_worker(server)
    watchdog_log.unlink(missing_ok=True)
    started = time.monotonic()
    for _ in range(5):
        time.sleep(0.5)
        assert server.get("/")[0] == 200
    time.sleep(3.0)  # idle: the loop wakes up from epoll once a second by itself
    elapsed = time.monotonic() - started
    assert pid_of_worker(server) == old, f"the worker was replaced: the heartbeat stopped\n{server.log()}"
    calls = [float(t) for t in watchdog_log.read_text().split()] if watchdog_log.exists() else []
    # at most once per wall-clock second (the loop compares whole seconds), and not much less when idle
    assert int(elapsed) - 1 <= len(calls) <= int(elapsed) + 2, f"{len(calls)} calls in {elapsed:.1f}s: {calls}"
    assert "WORKER TIMEOUT" not in server.log(), server.log()


# What MeinheldWorker.request_handler() hands the loop, per configuration: run in the stack's interpreter.
HANDLER_PROBE = """
import json, sys
from gunicorn.config import Config
from gunicorn.glogging import Logger
from meinheld.gmeinheld import MeinheldWorker
cfg = Config()
for name, value in json.loads(sys.argv[1]).items():
    cfg.set(name, value)
worker = MeinheldWorker.__new__(MeinheldWorker)  # no sockets or arbiter needed to pick the handler
worker.cfg, worker.log = cfg, Logger(cfg)
worker.max_requests = cfg.max_requests or sys.maxsize
worker.wsgi = app = lambda environ, start_response: []
handler = worker.request_handler()
print("app" if handler is app else handler.__name__)
"""


@pytest.mark.parametrize("stack", [pytest.param(("patched", m), id=f"patched-{m}") for m in MINORS], indirect=True)
@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({}, "app", id="defaults-app-itself"),
        pytest.param({"loglevel": "debug"}, "handle_request", id="debug-log-default-pre-request"),
        pytest.param({"max_requests": 100}, "count_request", id="max-requests-counter-only"),
        pytest.param({"pre_request": "hooks_conf.pre_request"}, "handle_request", id="pre-request-hook"),
        pytest.param({"post_request": "hooks_conf.post_request"}, "handle_request", id="post-request-hook"),
    ],
)
def test_request_handler_skips_the_wrapper_only_when_it_has_nothing_to_do(
    stack: object, settings: dict[str, object], expected: str
) -> None:
    """The per-request wrapper costs a few percent of throughput; it runs exactly when a hook, debug logging of the
    default pre_request, or max_requests needs it, and the loop gets the app itself otherwise."""
    probe = subprocess.run(
        stack.command(str(stack.python), "-c", HANDLER_PROBE, json.dumps(settings)),
        capture_output=True,
        text=True,
        cwd=APP_DIR,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == expected


@pytest.mark.parametrize(
    "stack",
    [pytest.param(("patched", m), id=f"patched-{m}") for m in MINORS]
    + [_stock("3.13", "undefined symbol Py_TRASHCAN_SAFE_BEGIN")],
    indirect=True,
)
def test_imports_and_serves(stack: object, gunicorn: object) -> None:
    """The extension imports (3.13 included), the wheel says it is patched and needs greenlet>=3, and it serves."""
    check = subprocess.run(
        stack.command(
            str(stack.python),
            "-c",
            "import importlib.metadata as m, meinheld.server, greenlet;"
            "print(m.version('meinheld'), m.requires('meinheld'), greenlet.__version__)",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    version, _, _ = check.stdout.partition(" ")
    if stack.kind == "patched":
        assert "+patched." in version, check.stdout
        assert "greenlet>=3" in check.stdout, check.stdout
    server = gunicorn(stack)
    assert server.get("/") == (200, b"Hello World from Meinheld\n")
