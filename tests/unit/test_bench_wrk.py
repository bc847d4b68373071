"""bench/wrk.py: reading wrk's report (units, optional error lines, failures) and the command line it builds."""

from __future__ import annotations

import pytest

from bench import wrk

KEEP_ALIVE = """Running 1s test @ http://127.0.0.1:58937/hello.txt
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   581.59us  575.46us   4.24ms   88.34%
    Req/Sec    15.66k     1.38k   18.65k    80.00%
  Latency Distribution
     50%  312.00us
     75%  779.00us
     90%    1.26ms
     99%    2.88ms
  15565 requests in 1.01s, 3.83MB read
Requests/sec:  15477.07
Transfer/sec:      3.81MB
"""

WITH_ERRORS = """Running 10s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.50ms    3.10ms   1.99s    91.00%
    Req/Sec     5.01k   300.00     5.50k    70.00%
  Latency Distribution
     50%   11.00ms
     75%   13.00ms
     90%   15.00ms
     99%    1.50s
  50123 requests in 10.00s, 7.80MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 17
Requests/sec:   5012.30
Transfer/sec:    798.50KB
"""


def test_parses_a_clean_keep_alive_report() -> None:
    result = wrk.parse(KEEP_ALIVE)
    assert result.requests == 15565
    assert result.requests_per_s == pytest.approx(15477.07)
    assert result.duration_s == pytest.approx(1.01)
    assert result.latency_avg_s == pytest.approx(581.59e-6)
    assert result.latency_p50_s == pytest.approx(312e-6)
    assert result.latency_p90_s == pytest.approx(1.26e-3)
    assert result.latency_p99_s == pytest.approx(2.88e-3)
    assert result.bytes_read == round(3.83 * 1024**2)
    assert (result.socket_errors, result.non_2xx_3xx) == (0, 0)


def test_parses_error_lines_and_second_latencies() -> None:
    result = wrk.parse(WITH_ERRORS)
    assert (result.connect_errors, result.read_errors, result.write_errors, result.timeouts) == (1, 2, 3, 4)
    assert result.socket_errors == 10
    assert result.non_2xx_3xx == 17
    assert result.latency_p99_s == pytest.approx(1.5)
    assert result.as_dict()["socket_errors"] == 10


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [("250", "us", 250e-6), ("1.5", "ms", 1.5e-3), ("2", "s", 2.0), ("1", "m", 60.0)],
)
def test_time_units(value: str, unit: str, expected: float) -> None:
    assert wrk.seconds(value, unit) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("drop", "named"),
    [("Requests/sec:", "Requests/sec"), ("     99%", "99% latency"), ("requests in", "requests total")],
)
def test_a_missing_line_is_an_error_not_a_zero(drop: str, named: str) -> None:
    broken = "\n".join(line for line in KEEP_ALIVE.splitlines() if drop not in line)
    with pytest.raises(wrk.WrkParseError, match=named):
        wrk.parse(broken)


def test_empty_output_is_an_error() -> None:
    with pytest.raises(wrk.WrkParseError):
        wrk.parse("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_command_pins_and_sends_connection_close() -> None:
    argv = wrk.command("http://127.0.0.1:8000/", duration_s=8, connections=64, threads=1, close=True, cpus="1")
    assert argv[:3] == ["taskset", "-c", "1"]
    assert argv[3:] == [
        "wrk",
        "-t1",
        "-c64",
        "-d8s",
        "--timeout=2s",
        "--latency",
        "-H",
        "Connection: close",
        "http://127.0.0.1:8000/",
    ]


def test_command_keep_alive_unpinned() -> None:
    argv = wrk.command("http://127.0.0.1:8000/", duration_s=2, connections=16, threads=2, close=False, cpus=None)
    assert argv[0] == "wrk"
    assert "Connection: close" not in argv


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:80/", "http://127.9.9.9:1/", "http://localhost:8/", "http://[::1]:8/"]
)
def test_loopback_targets_are_accepted(url: str) -> None:
    wrk.check_loopback(url)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:80/", "http://example.org/", "http://192.168.1.1:8080/", "http://[::2]/"]
)
def test_other_targets_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        wrk.command(url, duration_s=1, connections=1, threads=1, close=False, cpus=None)


def test_fractional_seconds_are_refused() -> None:
    with pytest.raises(ValueError, match="whole seconds"):
        wrk.command("http://127.0.0.1:1/", duration_s=0, connections=1, threads=1, close=False, cpus=None)
