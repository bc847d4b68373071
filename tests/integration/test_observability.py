"""Metrics and the JSON access log, counted by the real Meinheld workers under Gunicorn and read as a scraper would."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest

from bench.procs import free_port
from tests.conftest import REPO
from tests.integration.conftest import get

EXAMPLE = str(REPO / "example_app")

# An app with a page that never answers in time: its worker misses its heartbeat and the master kills it.
STUCK_APP = """
import time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/stuck":
        time.sleep(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def scrape(port: int) -> dict[str, float]:
    """The samples of the metrics endpoint, keyed by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line[:1] != "#"}


def requests(port: int, paths: list[str], connections: int = 4) -> None:
    """Send PATHS over a few keep-alive connections, reading every answer."""
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(connections)]
    for number, path in enumerate(paths):
        client = clients[number % connections]
        client.request("GET", path)
        client.getresponse().read()
    for client in clients:
        client.close()


def wait_for(condition, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


@pytest.fixture
def metrics_port() -> int:
    return free_port()


def test_every_request_is_counted_across_reloads_and_restarts(launch, tmp_path: Path, metrics_port: int) -> None:
    runtime = tmp_path / "shop"
    runtime.mkdir()
    env = {
        "APP_DIR": EXAMPLE,
        "WEB_CONCURRENCY": "2",
        "METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "RUNTIME_DIRECTORY": str(runtime),
    }
    service = launch(env)
    assert get(service.url, time.monotonic() + 60)[0] == 200
    requests(service.port, ["/"] * 599 + ["/missing"] * 100)
    samples = scrape(metrics_port)
    assert samples['gunicorn_requests_total{app="shop",status="200"}'] == 600
    assert samples['gunicorn_requests_total{app="shop",status="404"}'] == 100
    assert samples['gunicorn_request_duration_seconds_count{app="shop"}'] == 700
    assert samples['gunicorn_request_duration_seconds_bucket{app="shop",le="+Inf"}'] == 700
    assert samples['gunicorn_requests_in_flight{app="shop"}'] == 0
    assert samples['gunicorn_workers{app="shop"}'] == 2

    # A reload retires every worker: not a restart, and their counts stay.
    old = set(service.wait_for_workers(2))
    os.kill(service.process.pid, signal.SIGHUP)
    assert wait_for(lambda: not old & set(service.wait_for_workers(2, timeout=1)))
    # A worker killed from outside (the OOM killer's SIGKILL) is one.
    os.kill(service.wait_for_workers(2)[0], signal.SIGKILL)
    assert wait_for(lambda: scrape(metrics_port)['gunicorn_worker_restarts_total{app="shop"}'] == 1)
    assert len(service.wait_for_workers(2)) == 2
    requests(service.port, ["/"] * 300)
    samples = scrape(metrics_port)
    assert samples['gunicorn_requests_total{app="shop",status="200"}'] == 900
    assert samples['gunicorn_worker_restarts_total{app="shop"}'] == 1
    assert samples['gunicorn_worker_timeouts_total{app="shop"}'] == 0


def test_a_worker_past_its_timeout_is_counted(launch, tmp_path: Path, metrics_port: int) -> None:
    (tmp_path / "main.py").write_text(STUCK_APP)
    service = launch(
        {"APP_DIR": str(tmp_path), "WEB_CONCURRENCY": "1", "TIMEOUT": "2", "METRICS_BIND": f"127.0.0.1:{metrics_port}"}
    )
    assert get(service.url, time.monotonic() + 60)[0] == 200
    stuck = socket.create_connection(("127.0.0.1", service.port))
    stuck.sendall(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert wait_for(lambda: scrape(metrics_port)['gunicorn_worker_timeouts_total{app="app"}'] == 1)
        samples = scrape(metrics_port)
        assert samples['gunicorn_worker_restarts_total{app="app"}'] == 1
        assert samples['gunicorn_requests_total{app="app",status="200"}'] == 1  # the stuck one never answered
    finally:
        stuck.close()


def test_a_metrics_bind_in_use_stops_the_start_with_one_line(launch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        service = launch({"APP_DIR": EXAMPLE, "WEB_CONCURRENCY": "1", "METRICS_BIND": f"127.0.0.1:{port}"})
        assert service.process.wait(timeout=60) == 2
    stderr = service.stop()
    assert f"gunicorn_conf: METRICS_BIND=127.0.0.1:{port} cannot be served:" in stderr


def test_metrics_are_off_by_default(launch) -> None:
    service = launch({"APP_DIR": EXAMPLE, "WEB_CONCURRENCY": "1"})
    assert get(service.url, time.monotonic() + 60)[0] == 200
    assert '"metrics": null' in service.stop()


def test_json_access_log_is_one_object_per_request(launch) -> None:
    service = launch(
        {
            "APP_DIR": EXAMPLE,
            "WEB_CONCURRENCY": "2",
            "ACCESS_LOG": "-",
            "ACCESS_LOG_FORMAT": "json",
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        }
    )
    assert get(service.url, time.monotonic() + 60)[0] == 200
    requests(service.port, ["/", "/a%0Ab?x=1"] * 50)
    request = urllib.request.Request(service.url, headers={"X-Forwarded-For": "203.0.113.9"})
    urllib.request.urlopen(request, timeout=5).read()
    service.stop()
    records = [json.loads(line) for line in service.stdout.splitlines()]
    assert len(records) == 102  # the first GET, 100, the forwarded one: every line parses, none is Gunicorn's text
    assert sum(record["path"] == "/a\nb" and record["status"] == 404 for record in records) == 50
    assert records[-1]["client"] == "203.0.113.9"
    assert {record["method"] for record in records} == {"GET"}
