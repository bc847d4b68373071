"""Prometheus metrics of one Gunicorn instance, counted in memory its workers share with the master.

Why not Gunicorn's statsd instrumentation: it counts in Logger.access(), which the Meinheld worker never calls (its C
loop logs through its own access logger, and only with an access log on), so it would count nothing; and it sends a
UDP datagram per metric per request to an exporter Debian does not package. Here every worker counts each request
in its own slot of an anonymous shared mapping the master made before forking it (no lock, no syscall: a few integer
additions), and the master serves the sums on METRICS_BIND from a thread of its own. Nothing else runs.

gunicorn_conf.py loads this file (from its own directory) when METRICS_BIND is set and calls the hooks below from its
own: Registry lives on the arbiter, so a HUP, which runs the config file again, keeps the counts.
"""

from __future__ import annotations

import bisect
import functools
import http.server
import mmap
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

# Upper bounds of the latency histogram, seconds (Prometheus's client defaults, with 1 ms and 2.5 ms for fast apps).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKET_BOUNDS_NS = tuple(int(bound * 1e9) for bound in BUCKETS)

# One slot per worker: unsigned 64-bit counters at these offsets.
STARTED = 0  # requests the app was called for
FINISHED = 1  # requests whose app call returned or raised
DURATION_NS = 2  # their summed duration
BUCKET0 = 3  # len(BUCKETS) + 1 histogram buckets (not cumulative; the last is +Inf)
STATUS0 = BUCKET0 + len(BUCKETS) + 1  # one counter per status 100..599
OTHER_STATUS = STATUS0 + 500  # a status line that does not start with one of those
SLOT_FIELDS = OTHER_STATUS + 1
WORD = 8

# Signals with which the arbiter asks a worker to stop (a reload's retirement, fewer workers, a stop): such an exit
# is not a restart.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGQUIT, signal.SIGINT})

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Registry:
    """The master's side: the shared slots, who holds which, and what exited workers had counted."""

    def __init__(self, app: str, slots: int) -> None:
        self.app = app
        self.counts = memoryview(mmap.mmap(-1, slots * SLOT_FIELDS * WORD)).cast("Q")
        self.free = list(range(slots))
        self.held: set[int] = set()  # the slots of live workers
        self.retired = [0] * SLOT_FIELDS
        self.restarts = 0
        self.timeouts = 0
        self.stopping: set[int] = set()
        self.lock = threading.Lock()
        self.endpoint: http.server.HTTPServer | None = None

    def assign(self, worker: Any) -> None:
        """Before a fork: give the worker a zeroed slot (None when all are held: it then counts nothing)."""
        with self.lock:
            slot = self.free.pop(0) if self.free else None
            if slot is not None:
                self.held.add(slot)
        worker.wsgiops_metrics_slot = slot
        if slot is not None:  # what post_worker_init wraps the worker's app with, in the worker
            worker.wsgiops_count_requests = functools.partial(count_requests, counts=self.counts, slot=slot)

    def asked_to_stop(self, pid: int, sig: int) -> None:
        """The arbiter sends SIG to worker PID: remember the stops it asks for, to tell them from restarts."""
        if sig in STOP_SIGNALS:
            self.stopping.add(pid)

    def release(self, worker: Any) -> None:
        """After a worker exited: fold its slot into the totals, free it, and count a timeout or a restart."""
        slot = getattr(worker, "wsgiops_metrics_slot", None)
        asked = worker.pid in self.stopping
        self.stopping.discard(worker.pid)
        with self.lock:
            if getattr(worker, "aborted", False):
                self.timeouts += 1  # the arbiter's murder_workers: silent longer than TIMEOUT
                self.restarts += 1
            elif not asked:
                self.restarts += 1  # died on its own: a crash, the OOM killer, max_requests, WORKER_MAX_MEMORY
            if slot is None:
                return
            base = slot * SLOT_FIELDS
            row = self.counts[base : base + SLOT_FIELDS]
            self.retired = [total + count for total, count in zip(self.retired, row.tolist(), strict=True)]
            row[:] = memoryview(bytes(SLOT_FIELDS * WORD)).cast("Q")
            self.held.discard(slot)
            self.free.append(slot)

    def totals(self) -> tuple[list[int], int]:
        """The counters summed over live and exited workers, and the requests in flight now."""
        with self.lock:
            totals = list(self.retired)
            in_flight = 0
            for slot in self.held:
                row = self.counts[slot * SLOT_FIELDS : (slot + 1) * SLOT_FIELDS].tolist()
                totals = [total + count for total, count in zip(totals, row, strict=True)]
                in_flight += row[STARTED] - row[FINISHED]
            return totals, max(in_flight, 0)

    def render(self, workers: int) -> str:
        """The exposition text (Prometheus's text format 0.0.4)."""
        totals, in_flight = self.totals()
        app = 'app="' + self.app.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
        lines = [
            "# HELP gunicorn_requests_total Requests the app answered, by status.",
            "# TYPE gunicorn_requests_total counter",
        ]
        for code in range(100, 600):
            if count := totals[STATUS0 + code - 100]:
                lines.append(f'gunicorn_requests_total{{{app},status="{code}"}} {count}')
        if totals[OTHER_STATUS]:
            lines.append(f'gunicorn_requests_total{{{app},status="other"}} {totals[OTHER_STATUS]}')
        lines += [
            "# HELP gunicorn_request_duration_seconds Time in the app, from the call to its return.",
            "# TYPE gunicorn_request_duration_seconds histogram",
        ]
        cumulative = 0
        for index, bound in enumerate((*BUCKETS, None)):
            cumulative += totals[BUCKET0 + index]
            le = "+Inf" if bound is None else repr(bound)
            lines.append(f'gunicorn_request_duration_seconds_bucket{{{app},le="{le}"}} {cumulative}')
        lines += [
            f"gunicorn_request_duration_seconds_sum{{{app}}} {totals[DURATION_NS] / 1e9:.9f}",
            f"gunicorn_request_duration_seconds_count{{{app}}} {totals[FINISHED]}",
        ]
        with self.lock:
            restarts, timeouts = self.restarts, self.timeouts
        for name, kind, text, value in (
            ("gunicorn_requests_in_flight", "gauge", "Requests in the app now.", in_flight),
            ("gunicorn_workers", "gauge", "Workers alive.", workers),
            ("gunicorn_worker_restarts_total", "counter", "Workers that exited unasked and were replaced.", restarts),
            ("gunicorn_worker_timeouts_total", "counter", "Workers killed for staying silent past TIMEOUT.", timeouts),
        ):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}", f"{name}{{{app}}} {value}"]
        return "\n".join(lines) + "\n"


def count_requests(app: Callable[..., Any], counts: memoryview, slot: int) -> Callable[..., Any]:
    """Wrap a worker's APP so each request adds to SLOT of COUNTS: called, returned, duration, bucket, status.

    The duration is the app call's: under Meinheld a Flask response's body is ready when it returns. Status counts come
    from start_response, so a streaming app's count lands when it starts its answer. A request that raises counts as
    the 500 the server answers. Only this worker writes its slot, and a greenlet switches only inside the app, so
    plain additions do.
    """
    base = slot * SLOT_FIELDS
    started, finished, duration, bucket0 = base + STARTED, base + FINISHED, base + DURATION_NS, base + BUCKET0
    status_at = {str(code): base + STATUS0 + code - 100 for code in range(100, 600)}
    other, error = base + OTHER_STATUS, base + STATUS0 + 400
    bounds, clock, bucket_of = BUCKET_BOUNDS_NS, time.perf_counter_ns, bisect.bisect_left

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # exc_info passed on as None when not given (PEP 3333's default, which Meinheld and Gunicorn take): *args
        # would cost a fifth of the wrapper's time.
        def respond(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], Any]:
            counts[status_at.get(status[:3], other)] += 1
            return start_response(status, headers, exc_info)

        counts[started] += 1
        begin = clock()
        try:
            return app(environ, respond)
        except BaseException:
            counts[error] += 1
            raise
        finally:
            elapsed = clock() - begin
            counts[finished] += 1
            counts[duration] += elapsed
            counts[bucket0 + bucket_of(bounds, elapsed)] += 1

    return counted


def serve(registry: Registry, host: str, port: int, workers: Callable[[], int]) -> http.server.HTTPServer:
    """Serve GET /metrics on HOST:PORT from a daemon thread of the master; bind errors raise here, at start."""

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 5  # a scraper that stalls is dropped, it never holds the one thread
        server_version = "gunicorn-metrics"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = registry.render(workers()).encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not worth a journal line

    class Server(http.server.HTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = Server((host.strip("[]"), port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


def install(arbiter: Any, app: str, slots: int, host: str, port: int) -> Registry:
    """At the master's start: make the registry, watch the stops the arbiter asks for, serve the endpoint."""
    registry = Registry(app, slots)
    kill_worker = arbiter.kill_worker

    def tracked_kill_worker(pid: int, sig: int) -> None:
        registry.asked_to_stop(pid, sig)
        kill_worker(pid, sig)

    arbiter.kill_worker = tracked_kill_worker
    registry.endpoint = serve(registry, host, port, lambda: len(arbiter.WORKERS))
    arbiter.wsgiops_metrics = registry
    return registry
