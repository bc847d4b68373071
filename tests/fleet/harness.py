"""What the fleet tests drive: playbook runs timed batch by batch, load through the balancer, the balancer's view.

Why a timestamp per output line: a rolling play prints its `PLAY [...]` header once per batch, so the time between two
headers is the time one batch took (drain, deploy, health check, back in rotation), measured from outside, with no
callback plugin to install. The scale-on-paper table is computed from those figures.
"""

from __future__ import annotations

import hashlib
import http.client
import itertools
import json
import math
import os
import re
import shlex
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from cryptography import x509

from lab import fleet, ssh
from lab.paths import Layout
from tests.conftest import REPO, load_module
from tests.reliability.load import Load, Outcome

BIN = REPO / ".venv" / "bin"
INVENTORY = REPO / "inventory" / "fleet-lab"
EXAMPLE_APP = REPO / "roles" / "app" / "files" / "example_app"
ROLLING = "batch by batch"
HAPROXY = load_module(REPO / "plugins" / "modules" / "haproxy_server.py")
MEMBERS = {m.name: m for m in fleet.MEMBERS}
WEB = [m.name for m in fleet.MEMBERS if m.group == "web"]


@dataclass
class PlaybookRun:
    """One ansible-playbook run: its exit status, its output lines with the second each arrived, its batches."""

    rc: int
    lines: list[tuple[float, str]]
    seconds: float
    batches: list[float] = field(default_factory=list)

    @property
    def output(self) -> str:
        """The whole output, for assertions and failure messages."""
        return "\n".join(line for _, line in self.lines)


def batch_times(lines: list[tuple[float, str]]) -> list[float]:
    """Seconds per batch of the rolling play: from each of its PLAY headers to the next header or the recap."""
    marks = [(t, line) for t, line in lines if line.startswith("PLAY [") or line.startswith("PLAY RECAP")]
    times = []
    for (start, line), (end, _) in itertools.pairwise(marks):
        if ROLLING in line:
            times.append(round(end - start, 1))
    return times


def run_playbook(playbook: str, *args: str) -> PlaybookRun:
    """ansible-playbook against the fleet inventory, output read line by line as it comes.

    FLEET_PLAYBOOK_ARGS adds arguments to every run: `-e balancer_hosts_group=none` rolls without draining at the
    balancer, which is how to see these tests fail without the fix they hold in place.
    """
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    extra = shlex.split(os.environ.get("FLEET_PLAYBOOK_ARGS", ""))
    cmd = [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), str(REPO / "playbooks" / playbook), *args, *extra]
    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    with subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
        rc = proc.wait()
    return PlaybookRun(rc, lines, round(time.monotonic() - started, 1), batch_times(lines))


def vars_file(path: Path, **variables: object) -> str:
    """Extra vars as a JSON file (app_list and friends), for `-e @FILE`."""
    path.write_text(json.dumps(variables))
    return f"@{path}"


def release(target: Path, greeting: str, *, broken_on: str = "", migrate: str = "") -> Path:
    """A copy of the example app answering `greeting` (HTTP 500 on the host named `broken_on`), with an
    optional migrate.sh."""
    target.mkdir(parents=True)
    (target / "requirements.txt").write_text((EXAMPLE_APP / "requirements.txt").read_text())
    (target / "main.py").write_text(
        "import socket\n\nfrom flask import Flask\n\napp = Flask(__name__)\n\n\n"
        '@app.route("/")\n'
        "def hello():\n"
        f"    if socket.gethostname() == {broken_on!r}:\n"
        '        return "this release is broken on this host", 500\n'
        f"    return {greeting!r}\n"
    )
    if migrate:
        (target / "migrate.sh").write_text(migrate)
    return target


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to a name the controller cannot resolve (the balancer's ACME name), through its loopback forward.

    The TLS handshake asks for the name (SNI) and checks the certificate against it and the lab's ACME root, as a
    client that resolved the name would; only the TCP connection goes to 127.0.0.1.
    """

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def acme_root() -> Path:
    """The root certificate that verifies the balancer's (copied from the lab's Pebble by `make fleet`)."""
    return Layout.default().root / fleet.ACME_ROOT


def tls_context() -> ssl.SSLContext:
    """A client context trusting the lab's ACME root only, offering HTTP/1.1 (the load speaks it)."""
    context = ssl.create_default_context(cafile=str(acme_root()))
    context.set_alpn_protocols(["http/1.1"])
    return context


class FleetLoad(Load):
    """The reliability suite's load (a new connection per request), recording which backend answered what.

    An https:// URL goes through the balancer's TLS, verified against the lab's ACME root.
    """

    header = "X-Served-By"

    def __init__(self, url: str, clients: int = 4, timeout: float = 60.0) -> None:
        super().__init__(url, clients, timeout)
        self.tls = tls_context() if url.startswith("https://") else None

    def _connection(self) -> http.client.HTTPConnection:
        if self.tls is None:
            return super()._connection()
        return LoopbackHTTPS(self.host, self.port, timeout=self.timeout, context=self.tls)

    def _answer(self, response: http.client.HTTPResponse, body: str) -> str:
        return f"{response.getheader(self.header, '?')}: {body}"


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """One GET of URL (https through the balancer's TLS, verified): status, headers (lower-case names), body."""
    load = FleetLoad(url)
    connection = load._connection()
    try:
        query = urlsplit(url).query
        target = f"{load.path}?{query}" if query else load.path
        connection.request("GET", target, headers={"Connection": "close", **(headers or {})})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return response.status, {name.lower(): value for name, value in response.getheaders()}, body
    finally:
        connection.close()


def served_certificate() -> str:
    """The SHA-256 of the certificate the balancer serves its ACME name with (verified against the lab's root)."""
    sock = socket.create_connection(("127.0.0.1", fleet.LB_HTTPS_PORT), 10)
    with tls_context().wrap_socket(sock, server_hostname=fleet.ACME_NAME) as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()


def ask(url: str) -> tuple[int, str, str]:
    """One GET: status, the backend header, the body."""
    load = FleetLoad(url)
    status, text = load._one()
    served_by, _, body = text.partition(": ")
    return status or 0, served_by, body


def on(host: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command on a fleet host over SSH (the lab's key and options)."""
    return ssh.run(Layout.default().ssh_key, MEMBERS[host].ssh_port, list(argv))


ADMIN_QUERY = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "s.connect('/run/haproxy/admin.sock')\n"
    "s.sendall(sys.argv[1].encode() + b'\\n')\n"
    "print(b''.join(iter(lambda: s.recv(65536), b'')).decode())\n"
)


def lb_server_state(server: str, backend: str = "web") -> str:
    """ready, drain or maint: the balancer's administrative state of `server`, read from its admin socket."""
    answer = on("lb1", "python3", "-c", ADMIN_QUERY, f"show servers state {backend}")
    assert answer.returncode == 0, answer.stderr
    return HAPROXY.admin_name(HAPROXY.parse_servers_state(answer.stdout, backend, server)["admin"])


# The balancer's metrics, as a Prometheus on the balancer scrapes them: HAProxy's exporter on its loopback address
# (roles/balancer: balancer_metrics_bind) and the certificates' expiry the role writes for node_exporter.
LB_METRICS_URL = "http://127.0.0.1:8405/metrics"
LB_CERTIFICATE_METRICS = "/var/lib/prometheus/node-exporter/wsgiops_balancer_certificates.prom"
METRICS_QUERY = (
    "import sys, urllib.request\n"
    "answer = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
    "print(answer.headers.get('Content-Type'))\n"
    "print(answer.read().decode())\n"
)
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition: (metric name, its labels) -> value, every sample line (comments skipped)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        found = SAMPLE.match(line)
        assert found, f"not a sample line: {line!r}"
        name, labels, value = found.groups()
        samples[(name, frozenset(LABEL.findall(labels or "")))] = float(value)
    return samples


def lb_metrics() -> tuple[str, dict[tuple[str, frozenset[tuple[str, str]]], float]]:
    """What HAProxy's exporter answers on the balancer itself (its content type, its samples)."""
    answer = on("lb1", "python3", "-c", METRICS_QUERY, LB_METRICS_URL)
    assert answer.returncode == 0, answer.stderr
    content_type, _, text = answer.stdout.partition("\n")
    return content_type, parse_metrics(text)


def lb_server_status(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], server: str) -> str:
    """The one state haproxy_server_status has at 1 for `server` of backend web (UP, DOWN, MAINT, DRAIN, NOLB)."""
    states = [
        dict(labels)["state"]
        for (name, labels), value in samples.items()
        if name == "haproxy_server_status" and {("proxy", "web"), ("server", server)} <= labels and value == 1
    ]
    assert len(states) == 1, (server, states)
    return states[0]


def lb_certificate_expiry() -> dict[str, float]:
    """certificate -> notAfter (Unix time), as the balancer role wrote them for node_exporter."""
    answer = on("lb1", "cat", LB_CERTIFICATE_METRICS)
    assert answer.returncode == 0, answer.stderr
    return {
        dict(labels)["certificate"]: value
        for (name, labels), value in parse_metrics(answer.stdout).items()
        if name == "wsgiops_balancer_certificate_expiry_timestamp_seconds"
    }


def served_certificate_expiry() -> float:
    """The notAfter (Unix time) of the certificate the balancer serves its ACME name with."""
    sock = socket.create_connection(("127.0.0.1", fleet.LB_HTTPS_PORT), 10)
    with tls_context().wrap_socket(sock, server_hostname=fleet.ACME_NAME) as tls:
        der = tls.getpeercert(binary_form=True) or b""
    return x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def serving(host: str) -> str:
    """What a web host answers on its own port 80 (forwarded to loopback), bypassing the balancer."""
    status, _, body = ask(f"http://127.0.0.1:{MEMBERS[host].http_port}/")
    return f"{status} {body}"


def serving_within(host: str, expected: str, seconds: float = 60.0) -> str:
    """What `host` answers, polled until it is `expected` or `seconds` passed.

    A rollback is a graceful reload: the previous release's workers start while the failed release's still answer,
    and the app role does not wait for the switch, so right after a failed deploy a host may answer a moment longer
    with the release that failed (measured: still so when the playbook had returned).
    """
    deadline = time.monotonic() + seconds
    answer = serving(host)
    while answer != expected and time.monotonic() < deadline:
        time.sleep(1)
        answer = serving(host)
    return answer


SCALE_HOSTS = (10, 100, 1000)
SCALE_BATCHES = (("1 host", lambda n: 1), ("10%", lambda n: max(1, n // 10)), ("25%", lambda n: max(1, n // 4)))


def scale_table(seconds_per_batch: float, forks: int) -> list[str]:
    """Rolling-deploy time on paper for 10/100/1000 hosts at batch 1, 10% and 25%, from the measured batch time.

    Model: a batch costs the measured time as long as its hosts fit in Ansible's forks (they run in parallel); a
    batch of more hosts than forks runs in ceil(size / forks) waves. Balancer, network and controller CPU are assumed
    not to be the bottleneck, which is what a real fleet must check.
    """
    rows = [f"rolling deploy on paper, {seconds_per_batch:.1f} s per batch measured, forks={forks}:"]
    rows.append("  hosts | " + " | ".join(f"batch {name:>6}" for name, _ in SCALE_BATCHES))
    for hosts in SCALE_HOSTS:
        cells = []
        for _, size_of in SCALE_BATCHES:
            size = size_of(hosts)
            total = math.ceil(hosts / size) * math.ceil(size / forks) * seconds_per_batch
            cells.append(f"{_duration(total):>12}")
        rows.append(f"  {hosts:>5} | " + " | ".join(cells))
    return rows


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def forks() -> int:
    """Ansible's forks as ansible.cfg sets them (5, Ansible's default, when unset)."""
    found = re.search(r"^forks\s*=\s*(\d+)", (REPO / "ansible.cfg").read_text(), re.MULTILINE)
    return int(found.group(1)) if found else 5


# The lab's Prometheus on the balancer (lab/playbooks/prometheus.yml), through its loopback forward.
PROMETHEUS_URL = fleet.PROMETHEUS_URL
# Its scrape interval (the playbook's template): how long a change takes at most to reach it, plus the scrape itself.
SCRAPE_SECONDS = 2.0
Samples = dict[str, list[tuple[float, float]]]


def prometheus(api: str, **params: str) -> object:
    """One call of Prometheus's HTTP API (api: e.g. "query"); its `data`, after checking the call succeeded."""
    url = f"{PROMETHEUS_URL}api/v1/{api}?{urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return body["data"]


def query(expr: str, at: float | None = None) -> list[dict[str, object]]:
    """Prometheus's own evaluation of EXPR (an instant query, now or at Unix time AT): its result list."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    data = prometheus("query", **params)
    assert isinstance(data, dict), data
    return data["result"]


def query_value(expr: str) -> float | None:
    """The single value an instant query of EXPR gives now (None: no series)."""
    result = query(expr)
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def query_until(expr: str, expected: float, seconds: float = 10 * SCRAPE_SECONDS) -> tuple[float | None, float]:
    """Poll EXPR until its value is EXPECTED or SECONDS passed: the last value and how long it took."""
    started = time.monotonic()
    value = query_value(expr)
    while value != expected and time.monotonic() - started < seconds:
        time.sleep(0.5)
        value = query_value(expr)
    return value, round(time.monotonic() - started, 1)


def raw_samples(selector: str, seconds: int) -> Samples:
    """Every sample Prometheus stored for SELECTOR in the last SECONDS, summed per instance at each scrape.

    A range selector in an instant query returns the stored samples with their scrape timestamps (no extrapolation,
    unlike rate or increase); the series of one target (one per status, here) share its scrapes' timestamps.
    """
    per_instance: dict[str, dict[float, float]] = {}
    for series in query(f"{selector}[{seconds}s]"):
        instance = per_instance.setdefault(series["metric"]["instance"], {})
        for stamp, value in series["values"]:
            instance[float(stamp)] = instance.get(float(stamp), 0.0) + float(value)
    return {instance: sorted(samples.items()) for instance, samples in per_instance.items()}


def send(url: str, requests: int, clients: int = 4, seconds: float = 300.0) -> Outcome:
    """Exactly REQUESTS GETs of URL from CLIENTS threads (the fleet load's connections), then the outcome.

    Bounded in count and in time: a client takes no new request once SECONDS passed.
    """
    load = FleetLoad(url, clients)
    outcome, lock, tickets = Outcome(), threading.Lock(), iter(range(requests))
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if next(tickets, None) is None:
                    return
            status, body = load._one()
            with lock:
                outcome.sent += 1
                if status is None:
                    outcome.errors.append(body)
                else:
                    outcome.statuses[status] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + load.timeout)
    outcome.seconds = time.monotonic() - started
    return outcome


def lb_admin(command: str) -> str:
    """One command on the balancer's admin socket (e.g. `set server web/web2 state drain`): its answer."""
    answer = on("lb1", "python3", "-c", ADMIN_QUERY, command)
    assert answer.returncode == 0, answer.stderr
    return answer.stdout.strip()
