"""Run wrk (Debian's, 4.x) against a loopback URL and turn its text report into numbers.

wrk prints its summary for people, so the parser is strict: a report it cannot read raises WrkParseError instead of
turning into a zero that would look like a slow server.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

# Loopback only: the load generator must never be pointed at another host.
LOOPBACK_HOSTS = ("localhost", "::1")
_TIME_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

_TIME = r"([\d.]+)(us|ms|s|m|h)"
_PERCENTILE = re.compile(rf"^\s*(50|75|90|99)(?:\.0+)?%\s+{_TIME}\s*$", re.MULTILINE)
_TOTAL = re.compile(rf"^\s*(\d+) requests in {_TIME}, ([\d.]+)(B|KB|MB|GB|TB) read\s*$", re.MULTILINE)
_SOCKET_ERRORS = re.compile(
    r"^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)\s*$", re.MULTILINE
)
_NON_2XX = re.compile(r"^\s*Non-2xx or 3xx responses: (\d+)\s*$", re.MULTILINE)
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_LATENCY_AVG = re.compile(rf"^\s*Latency\s+{_TIME}\s", re.MULTILINE)


class WrkParseError(ValueError):
    """wrk's output lacks a line the benchmark needs (wrk failed, or its format changed)."""


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: what a report needs, in plain units (seconds, bytes)."""

    requests: int
    duration_s: float
    requests_per_s: float
    latency_avg_s: float
    latency_p50_s: float
    latency_p75_s: float
    latency_p90_s: float
    latency_p99_s: float
    bytes_read: int
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx_3xx: int = 0

    @property
    def socket_errors(self) -> int:
        """Connect, read, write errors and timeouts: requests that got no answer at all."""
        return self.connect_errors + self.read_errors + self.write_errors + self.timeouts

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the derived error total."""
        return {**asdict(self), "socket_errors": self.socket_errors}


def seconds(value: str, unit: str) -> float:
    """Convert wrk's "1.23ms" style (number, unit) to seconds."""
    return float(value) * _TIME_UNITS[unit]


def parse(output: str) -> WrkResult:
    """Read a `wrk --latency` report; raise WrkParseError when a required line is missing."""
    total = _TOTAL.search(output)
    rps = _RPS.search(output)
    avg = _LATENCY_AVG.search(output)
    percentiles = {int(m.group(1)): seconds(m.group(2), m.group(3)) for m in _PERCENTILE.finditer(output)}
    missing = [
        name
        for name, found in (("requests total", total), ("Requests/sec", rps), ("latency average", avg))
        if found is None
    ]
    missing += [f"{p}% latency" for p in (50, 75, 90, 99) if p not in percentiles]
    if missing or total is None or rps is None or avg is None:
        raise WrkParseError(f"wrk output lacks {', '.join(missing)} (was --latency given?):\n{output}")
    errors = _SOCKET_ERRORS.search(output)
    connect, read, write, timeout = (int(g) for g in errors.groups()) if errors else (0, 0, 0, 0)
    non_2xx = _NON_2XX.search(output)
    return WrkResult(
        requests=int(total.group(1)),
        duration_s=seconds(total.group(2), total.group(3)),
        requests_per_s=float(rps.group(1)),
        latency_avg_s=seconds(avg.group(1), avg.group(2)),
        latency_p50_s=percentiles[50],
        latency_p75_s=percentiles[75],
        latency_p90_s=percentiles[90],
        latency_p99_s=percentiles[99],
        bytes_read=round(float(total.group(4)) * _SIZE_UNITS[total.group(5)]),
        connect_errors=connect,
        read_errors=read,
        write_errors=write,
        timeouts=timeout,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def check_loopback(url: str) -> None:
    """Refuse any target that is not this machine's loopback interface."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise ValueError(f"refusing to load {url!r}: the benchmark only targets loopback addresses")


def command(
    url: str,
    *,
    duration_s: int,
    connections: int,
    threads: int,
    close: bool,
    cpus: str | None,
    timeout_s: int = 2,
) -> list[str]:
    """The wrk command line; `close` sends `Connection: close` so every request pays for a new TCP connection.

    wrk takes whole seconds only (it rejects "0.5s").
    """
    check_loopback(url)
    if duration_s < 1 or timeout_s < 1:
        raise ValueError("wrk durations are whole seconds, at least 1")
    argv = ["taskset", "-c", cpus] if cpus else []
    argv += ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    return [*argv, url]


def run(argv: list[str], duration_s: int) -> WrkResult:
    """Run wrk to completion (bounded: its own -d plus a margin) and parse what it printed."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    if done.returncode != 0:
        raise WrkParseError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}")
    return parse(done.stdout)
