"""gunicorn_metrics.py: what a worker counts per request, what the master folds and serves."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from types import ModuleType, SimpleNamespace

import pytest

from tests.conftest import FILES, load_module

# One sample line of Prometheus's text format: a name, optional labels, a number.
SAMPLE = re.compile(r'[a-z_]+(\{([a-z]+="[^"\\]*(\\.[^"\\]*)*",?)+\})? [0-9.e+]+')


@pytest.fixture(scope="module")
def metrics() -> ModuleType:
    return load_module(FILES / "gunicorn_metrics.py")


def app(status: str = "200 OK", raises: bool = False):
    def wsgi(environ, start_response):
        if raises:
            raise RuntimeError("the app failed")
        start_response(status, [("Content-Type", "text/plain")])
        return [b"ok"]

    return wsgi


def serve(registry, metrics: ModuleType, wsgi, worker) -> list:
    """Call the counting wrapper of WORKER's slot once, as the worker's loop does."""
    counted = metrics.count_requests(wsgi, registry.counts, worker.wsgiops_metrics_slot)
    return counted({}, lambda status, headers, *exc_info: None)


def sample(text: str, line: str) -> float:
    """The value of the sample whose name and labels are LINE, from exposition TEXT."""
    for row in text.splitlines():
        if row.rsplit(" ", 1)[0] == line:
            return float(row.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line} in:\n{text}")


def worker(pid: int) -> SimpleNamespace:
    return SimpleNamespace(pid=pid, aborted=False)


@pytest.mark.parametrize(
    ("status", "raises", "label"),
    [("200 OK", False, "200"), ("404 NOT FOUND", False, "404"), ("200 OK", True, "500"), ("abc", False, "other")],
)
def test_each_request_counts_its_status(metrics: ModuleType, status: str, raises: bool, label: str) -> None:
    registry = metrics.Registry("shop", 4)
    registry.assign(one := worker(10))
    for _ in range(3):
        try:
            serve(registry, metrics, app(status, raises), one)
        except RuntimeError:
            assert raises
    text = registry.render(1)
    assert sample(text, f'gunicorn_requests_total{{app="shop",status="{label}"}}') == 3
    assert sample(text, 'gunicorn_request_duration_seconds_count{app="shop"}') == 3
    assert sample(text, 'gunicorn_request_duration_seconds_bucket{app="shop",le="+Inf"}') == 3
    assert sample(text, 'gunicorn_requests_in_flight{app="shop"}') == 0


def test_histogram_is_cumulative_and_sums_the_durations(metrics: ModuleType) -> None:
    registry = metrics.Registry("shop", 2)
    registry.assign(one := worker(10))
    base = one.wsgiops_metrics_slot * metrics.SLOT_FIELDS
    # Two requests of 2 ms and 30 ms, written where count_requests writes them.
    for nanoseconds in (2_000_000, 30_000_000):
        registry.counts[base + metrics.FINISHED] += 1
        registry.counts[base + metrics.DURATION_NS] += nanoseconds
        registry.counts[base + metrics.BUCKET0 + metrics.bisect.bisect_left(metrics.BUCKET_BOUNDS_NS, nanoseconds)] += 1
    text = registry.render(1)
    assert sample(text, 'gunicorn_request_duration_seconds_bucket{app="shop",le="0.001"}') == 0
    assert sample(text, 'gunicorn_request_duration_seconds_bucket{app="shop",le="0.0025"}') == 1
    assert sample(text, 'gunicorn_request_duration_seconds_bucket{app="shop",le="0.025"}') == 1
    assert sample(text, 'gunicorn_request_duration_seconds_bucket{app="shop",le="0.05"}') == 2
    assert sample(text, 'gunicorn_request_duration_seconds_sum{app="shop"}') == pytest.approx(0.032)


def test_a_request_in_the_app_is_in_flight(metrics: ModuleType) -> None:
    registry = metrics.Registry("shop", 2)
    registry.assign(one := worker(10))
    seen = []

    def slow(environ, start_response):
        seen.append(sample(registry.render(1), 'gunicorn_requests_in_flight{app="shop"}'))
        start_response("200 OK", [])
        return [b""]

    serve(registry, metrics, slow, one)
    assert seen == [1]
    assert sample(registry.render(1), 'gunicorn_requests_in_flight{app="shop"}') == 0


def test_an_exited_workers_counts_stay_and_its_slot_is_reused(metrics: ModuleType) -> None:
    registry = metrics.Registry("shop", 1)
    registry.assign(old := worker(10))
    serve(registry, metrics, app(), old)
    registry.asked_to_stop(10, signal.SIGTERM)  # a reload retires it
    registry.release(old)
    registry.assign(new := worker(11))
    assert new.wsgiops_metrics_slot == old.wsgiops_metrics_slot
    serve(registry, metrics, app(), new)
    text = registry.render(1)
    assert sample(text, 'gunicorn_requests_total{app="shop",status="200"}') == 2
    assert sample(text, 'gunicorn_worker_restarts_total{app="shop"}') == 0


@pytest.mark.parametrize(
    ("sig", "aborted", "restarts", "timeouts"),
    [
        (None, False, 1, 0),  # died on its own: a crash, max_requests, WORKER_MAX_MEMORY
        (signal.SIGKILL, False, 1, 0),  # not a stop the arbiter asks for gracefully
        (signal.SIGTERM, False, 0, 0),  # a reload or fewer workers
        (signal.SIGQUIT, False, 0, 0),
        (signal.SIGABRT, True, 1, 1),  # murder_workers: past TIMEOUT
    ],
)
def test_exits_count_as_restarts_and_timeouts(
    metrics: ModuleType, sig: int | None, aborted: bool, restarts: int, timeouts: int
) -> None:
    registry = metrics.Registry("shop", 2)
    registry.assign(one := worker(10))
    one.aborted = aborted
    if sig is not None:
        registry.asked_to_stop(10, sig)
    registry.release(one)
    text = registry.render(0)
    assert sample(text, 'gunicorn_worker_restarts_total{app="shop"}') == restarts
    assert sample(text, 'gunicorn_worker_timeouts_total{app="shop"}') == timeouts


def test_a_worker_beyond_the_slots_counts_nothing(metrics: ModuleType) -> None:
    registry = metrics.Registry("shop", 1)
    registry.assign(worker(10))
    registry.assign(extra := worker(11))
    assert extra.wsgiops_metrics_slot is None
    registry.release(extra)  # nothing to fold, no error


def test_the_exposition_is_prometheus_text(metrics: ModuleType) -> None:
    registry = metrics.Registry('we"ird\\app', 2)
    registry.assign(one := worker(10))
    serve(registry, metrics, app(), one)
    for line in registry.render(3).splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.fullmatch(line), line
    assert 'app="we\\"ird\\\\app"' in registry.render(3)


def test_the_endpoint_serves_metrics_and_nothing_else(metrics: ModuleType) -> None:
    registry = metrics.Registry("shop", 2)
    server = metrics.serve(registry, "127.0.0.1", 0, lambda: 4)
    port = server.server_address[1]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.headers["Content-Type"] == metrics.CONTENT_TYPE
            assert sample(response.read().decode(), 'gunicorn_workers{app="shop"}') == 4
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert refused.value.code == 404
    finally:
        server.shutdown()
        server.server_close()


def test_install_tracks_the_stops_the_arbiter_asks_for(metrics: ModuleType) -> None:
    sent = []
    arbiter = SimpleNamespace(WORKERS={10: object()}, kill_worker=lambda pid, sig: sent.append((pid, sig)))
    registry = metrics.install(arbiter, "shop", 2, "127.0.0.1", 0)
    arbiter.kill_worker(10, signal.SIGTERM)
    assert sent == [(10, signal.SIGTERM)]
    assert registry.stopping == {10}
    assert arbiter.wsgiops_metrics is registry
    registry.endpoint.shutdown()
    registry.endpoint.server_close()
