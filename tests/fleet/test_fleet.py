"""Rolling deploys through a real HAProxy in front of three web hosts, under continuous load: zero failed requests.

The tests run in order on one fleet and each starts from where the previous left it: the example app everywhere
(with its metrics, which the lab's Prometheus on lb1 scrapes: every target up, the requests sent through the balancer
counted, a drained backend seen drained), then release 2 (a code deploy with a migration), then a settings change
that restarts, then a release that fails its health check on the second host (Prometheus sees it left drained), then
a release whose migration fails (nothing switches). The load is the reliability suite's: client threads, one new
connection per request, every answer counted; a failed request is a refused or reset connection, a timeout or a
status other than 2xx.
"""

from __future__ import annotations

import collections
import json
import subprocess
import time
from pathlib import Path

import yaml

from tests.conftest import REPO
from tests.fleet import harness
from tests.fleet.conftest import Report

CLIENTS = 4
MIGRATION_LOG = "/tmp/fleet-migrations.log"
MIGRATE = f'echo "$(hostname) $(basename "$APP_DIR")" >> {MIGRATION_LOG}\n'
GREETING = "Hello World from Flask"


def _app(path: Path, **env: str) -> dict[str, object]:
    return {"name": "example", "path": str(path), "env": env}


def _deploy(tmp_path: Path, report: Report, case: str, app: dict[str, object], note: str = "") -> harness.PlaybookRun:
    """deploy.yml batch by batch (serial 1) under load through the balancer; records the case's figures."""
    extra = harness.vars_file(tmp_path / "vars.json", app_list=[app])
    with harness.FleetLoad(harness.fleet.LB_HTTPS_URL, clients=CLIENTS) as load:
        run = harness.run_playbook("deploy.yml", "-e", extra)
    outcome = load.outcome
    served = collections.Counter(body for body in outcome.bodies.elements())
    report.cases.append((case, outcome.sent, outcome.failed, run.batches, note, run.rc == 0))
    print(f"{case}: {outcome.summary()}; answers {dict(served)}; batches {run.batches}")
    return run


def test_1_the_balancer_answers_from_every_web_host_in_turn() -> None:
    answers = [harness.ask(harness.fleet.LB_HTTPS_URL) for _ in range(6)]
    assert {status for status, _, _ in answers} == {200}, answers
    assert all(body.startswith(GREETING) for _, _, body in answers), answers
    assert {served_by for _, served_by, _ in answers} == set(harness.WEB), answers


def _client_seen(url: str, headers: dict[str, str]) -> dict[str, str]:
    """What the example app's /client says it believes of one request (its address and scheme)."""
    status, _, body = harness.fetch(url + "client", headers)
    assert status == 200, body
    return json.loads(body)


def test_1b_the_app_sees_the_client_through_the_balancer_and_believes_nobody_else() -> None:
    """HAProxy replaces the forwarding headers a client sends; a backend believes them from the balancer only."""
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "gopher"}
    web1 = harness.MEMBERS["web1"]
    direct = _client_seen(f"http://127.0.0.1:{web1.http_port}/", {})  # the test client as the hosts see it
    assert direct["remote_addr"] not in ("203.0.113.9", harness.MEMBERS["lb1"].address), direct
    through = _client_seen(harness.fleet.LB_HTTPS_URL, forged)
    assert through == {"remote_addr": direct["remote_addr"], "scheme": "https"}
    assert _client_seen(f"http://127.0.0.1:{web1.http_port}/", forged) == direct


def test_1c_plain_http_redirects_to_https_but_the_acme_challenge_path() -> None:
    status, headers, _ = harness.fetch(harness.fleet.LB_URL + "some/page?x=1")
    assert (status, headers.get("location")) == (
        301,
        f"https://127.0.0.1:{harness.MEMBERS['lb1'].http_port}/some/page?x=1",
    )
    challenge, _, _ = harness.fetch(harness.fleet.LB_URL + ".well-known/acme-challenge/none")
    assert challenge == 503  # to certbot's standalone server, which listens only while it answers a challenge


def test_1d_tls_verifies_offers_h2_and_refuses_tls_1_1() -> None:
    name, port = harness.fleet.ACME_NAME, harness.fleet.LB_HTTPS_PORT
    curl = subprocess.run(
        [
            "curl",
            "-sS",
            "--http2",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
            "-D",
            "-",
            "--cacert",
            str(harness.acme_root()),
            "--resolve",
            f"{name}:{port}:127.0.0.1",
            f"https://{name}:{port}/",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert curl.returncode == 0 and curl.stdout.endswith("2 200"), curl.stdout + curl.stderr
    assert "strict-transport-security: max-age=300" in curl.stdout.lower(), curl.stdout
    s_client = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", name]
    offered = subprocess.run(
        [*s_client, "-alpn", "h2,http/1.1", "-CAfile", str(harness.acme_root())],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert "ALPN protocol: h2" in offered.stdout and "Verify return code: 0 (ok)" in offered.stdout, offered.stdout
    old = subprocess.run(
        [*s_client, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
        input="",
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    # Refused: no certificate comes back and no cipher is agreed (s_client's exit status does not say it).
    assert "no peer certificate available" in old.stdout and "Cipher is (NONE)" in old.stdout, old.stdout + old.stderr


CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), 5).close()\n"
    "    print('connected')\n"
    "except ConnectionRefusedError:\n"
    "    print('refused')\n"
)


def test_1e_the_balancer_exports_its_state_to_prometheus_on_loopback_only() -> None:
    """HAProxy's own exporter answers on the balancer's loopback (where a Prometheus on lb1 scrapes it): every web
    host a server UP, the backend UP, the frontend's answers by class; another fleet host finds the port closed."""
    content_type, samples = harness.lb_metrics()
    assert content_type.startswith("text/plain"), content_type
    assert {host: harness.lb_server_status(samples, host) for host in harness.WEB} == dict.fromkeys(harness.WEB, "UP")
    assert samples[("haproxy_backend_status", frozenset({("proxy", "web"), ("state", "UP")}))] == 1
    assert samples[("haproxy_frontend_http_responses_total", frozenset({("proxy", "web_in"), ("code", "2xx")}))] > 0
    probe = harness.on("web1", "python3", "-c", CONNECT, harness.MEMBERS["lb1"].address, "8405")
    assert probe.stdout.strip() == "refused", probe.stdout + probe.stderr


def test_1f_the_served_certificate_s_expiry_is_written_for_node_exporter() -> None:
    """HAProxy 2.6's exporter has no certificate expiry: the role writes the served certificate's notAfter for
    node_exporter's textfile collector, which the expiry alert reads."""
    assert harness.lb_certificate_expiry() == {harness.fleet.ACME_NAME: harness.served_certificate_expiry()}


# What the lab's Prometheus scrapes (lab/playbooks/prometheus.yml): each target's instance is HOST:PORT.
PROMETHEUS_TARGETS = {
    ("prometheus", "lb1:9090"): 1.0,
    **{("apps", f"{host}:9101"): 1.0 for host in harness.WEB},
    ("balancer", "lb1:8405"): 1.0,
    **{("node", f"{member.name}:9100"): 1.0 for member in harness.fleet.MEMBERS},
}


def prometheus_active_targets() -> dict[tuple[str, str], float]:
    """(job, instance) -> 1.0 if its last scrape succeeded, of every target Prometheus's configuration has."""
    targets = harness.prometheus("targets", state="active")["activeTargets"]
    return {(t["labels"]["job"], t["labels"]["instance"]): float(t["health"] == "up") for t in targets}


def test_1g_prometheus_scrapes_every_app_the_balancer_and_every_node_exporter() -> None:
    """Prometheus on lb1 finds every target up (and no other), runs the collection's alert rules without error,
    and reads the served certificate's expiry through node_exporter on the balancer (what the expiry alert needs)."""
    deadline = time.monotonic() + 15 * harness.SCRAPE_SECONDS  # make fleet may have ended a scrape or two ago
    # The targets of the running configuration, and `up` of each: a series of a target a reload removed stays in
    # `up` for the 5 minutes of a query's lookback (nothing marks it stale), so `up` alone could hide a wrong one.
    while True:
        active = prometheus_active_targets()
        up = {(r["metric"]["job"], r["metric"]["instance"]): float(r["value"][1]) for r in harness.query("up")}
        if (active, up) == (PROMETHEUS_TARGETS, PROMETHEUS_TARGETS) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert active == PROMETHEUS_TARGETS
    assert up == PROMETHEUS_TARGETS
    shipped = yaml.safe_load((REPO / "files" / "prometheus" / "alerts.yml").read_text())
    while True:  # evaluated every 10 s: a rule not evaluated yet is "unknown"
        groups = harness.prometheus("rules")["groups"]
        health = {rule["name"]: rule["health"] for group in groups for rule in group["rules"]}
        if set(health.values()) == {"ok"} or time.monotonic() > deadline + 20:
            break
        time.sleep(1)
    assert sorted(group["name"] for group in groups) == sorted(group["name"] for group in shipped["groups"])
    assert set(health) == {rule["alert"] for group in shipped["groups"] for rule in group["rules"]}
    assert set(health.values()) == {"ok"}, [r for g in groups for r in g["rules"] if r["health"] != "ok"]
    expiry = harness.query('wsgiops_balancer_certificate_expiry_timestamp_seconds{job="node"}')
    assert {(r["metric"]["instance"], r["metric"]["certificate"], float(r["value"][1])) for r in expiry} == {
        ("lb1:9100", name, not_after) for name, not_after in harness.lb_certificate_expiry().items()
    }


COUNTED_REQUESTS = 2000
APP_REQUESTS = 'gunicorn_requests_total{job="apps"}'
QUIET_SECONDS = 16


def test_1h_prometheus_counts_the_requests_sent_through_the_balancer(report: Report) -> None:
    """COUNTED_REQUESTS through the balancer's HTTPS: the requests the three apps counted, as Prometheus stored
    them, grew by as many (within 2%), once HAProxy's health checks are taken out.

    The apps count every request they answer, and HAProxy's health checks are requests too (GET / of each web host
    every second: roles/balancer, balancer_check_interval_ms): about three a second across the backends, which over
    the load's window (plus a scrape on each side) would be several per cent of the count. So each host's check rate
    is measured first, from Prometheus's own samples over a quiet window in which nothing else sends, and what that
    rate predicts between the last sample before the load and the first one after it is subtracted. The figures use
    the stored samples and their scrape timestamps (a range selector), not rate() or increase(), which extrapolate.
    """
    quiet_start = time.time()
    time.sleep(QUIET_SECONDS)
    load_start = time.time()
    outcome = harness.send(harness.fleet.LB_HTTPS_URL, COUNTED_REQUESTS)
    load_end = time.time()
    assert (outcome.sent, outcome.failed) == (COUNTED_REQUESTS, 0), outcome.summary()
    window = int(time.time() - quiet_start) + 30
    deadline = time.monotonic() + 10 * harness.SCRAPE_SECONDS
    while True:  # until every app has been scraped after the load ended
        samples = harness.raw_samples(APP_REQUESTS, window)
        scraped = {instance: any(t >= load_end for t, _ in rows) for instance, rows in samples.items()}
        if (len(scraped) == len(harness.WEB) and all(scraped.values())) or time.monotonic() > deadline:
            break
        time.sleep(harness.SCRAPE_SECONDS / 2)
    assert scraped == {f"{host}:9101": True for host in harness.WEB}, scraped
    counted = checks = 0.0
    per_host = {}
    for instance, rows in sorted(samples.items()):
        quiet = [(t, v) for t, v in rows if quiet_start <= t <= load_start]
        assert len(quiet) >= 3, (instance, rows)
        rate = (quiet[-1][1] - quiet[0][1]) / (quiet[-1][0] - quiet[0][0])
        before, after = quiet[-1], next((t, v) for t, v in rows if t >= load_end)
        counted += after[1] - before[1]
        checks += rate * (after[0] - before[0])
        per_host[instance] = (round(after[1] - before[1]), round(rate, 2))
    net = counted - checks
    note = f"Prometheus counted {net:.0f} ({counted:.0f} minus {checks:.0f} health checks)"
    report.cases.append(("requests counted by Prometheus", outcome.sent, outcome.failed, [], note, True))
    print(f"Prometheus's count: {outcome.summary()}; {note}; per host (counted, checks/s) {per_host}")
    assert abs(net - COUNTED_REQUESTS) <= 0.02 * COUNTED_REQUESTS, (note, per_host)
    # Every backend took its share (round robin): none was skipped by Prometheus or by the balancer.
    assert all(share > COUNTED_REQUESTS / len(harness.WEB) / 2 for share, _ in per_host.values()), per_host


def _drained(server: str) -> str:
    return f'haproxy_server_status{{job="balancer",proxy="web",server="{server}",state="DRAIN"}}'


def test_1i_a_backend_drained_at_the_balancer_shows_as_drained_in_prometheus() -> None:
    """Drained through HAProxy's admin socket (as a rolling deploy drains each batch), web2 shows DRAIN at 1 in
    Prometheus within a few scrapes; put back in rotation, 0 again."""
    assert harness.query_value(_drained("web2")) == 0
    try:
        harness.lb_admin("set server web/web2 state drain")
        assert harness.lb_server_state("web2") == "drain"
        drained, seen_after = harness.query_until(_drained("web2"), 1)
        others = [harness.query_value(_drained(host)) for host in harness.WEB if host != "web2"]
    finally:
        harness.lb_admin("set server web/web2 state ready")
    assert drained == 1, drained
    assert others == [0, 0], others
    ready, back_after = harness.query_until(_drained("web2"), 0)
    assert ready == 0, ready
    print(f"Prometheus saw web2 drained after {seen_after} s, back in rotation after {back_after} s")


def test_2_a_code_deploy_rolls_with_zero_failed_requests_and_one_migration(tmp_path: Path, report: Report) -> None:
    for host in harness.WEB:
        harness.on(host, "rm", "-f", MIGRATION_LOG)
    code = harness.release(tmp_path / "release2", f"{GREETING}, release 2", migrate=MIGRATE)
    run = _deploy(tmp_path, report, "code deploy (reload)", _app(code), "migrate.sh ran once")
    assert run.rc == 0, run.output[-3000:]
    assert len(run.batches) == len(harness.WEB), run.batches
    assert report.cases[-1][2] == 0, report.cases[-1]
    for host in harness.WEB:
        assert harness.serving(host) == f"200 {GREETING}, release 2"
        assert harness.lb_server_state(host) == "ready"
    migrations = {host: harness.on(host, "cat", MIGRATION_LOG).stdout.split("\n")[:-1] for host in harness.WEB}
    ran = {host: lines for host, lines in migrations.items() if lines}
    assert list(ran) == [harness.WEB[0]] and len(ran[harness.WEB[0]]) == 1, migrations


def test_3_a_settings_change_restarts_host_by_host_with_zero_failed_requests(tmp_path: Path, report: Report) -> None:
    code = harness.release(tmp_path / "release2", f"{GREETING}, release 2", migrate=MIGRATE)
    run = _deploy(tmp_path, report, "settings change (restart)", _app(code, WORKERS_PER_CORE="1"))
    assert run.rc == 0, run.output[-3000:]
    assert run.output.count("gunicorn@example.service restarted") == len(harness.WEB), run.output[-3000:]
    assert report.cases[-1][2] == 0, report.cases[-1]
    for host in harness.WEB:
        assert harness.lb_server_state(host) == "ready"


def test_4_a_release_failing_its_health_check_on_the_second_host_stops_there(tmp_path: Path, report: Report) -> None:
    first, second, third = harness.WEB
    broken = harness.release(tmp_path / "release3", f"{GREETING}, release 3", broken_on=second)
    run = _deploy(
        tmp_path, report, "release failing on web2", _app(broken, WORKERS_PER_CORE="1"), "stopped at web2, rolled back"
    )
    assert run.rc != 0, run.output[-3000:]
    assert len(run.batches) == 2, run.batches
    assert "rolled back to" in run.output, run.output[-3000:]
    assert report.cases[-1][2] == 0, report.cases[-1]
    assert harness.serving(first) == f"200 {GREETING}, release 3"
    assert harness.serving_within(second, f"200 {GREETING}, release 2") == f"200 {GREETING}, release 2"
    assert harness.serving(third) == f"200 {GREETING}, release 2"
    assert [harness.lb_server_state(h) for h in harness.WEB] == ["ready", "drain", "ready"]
    answers = [harness.ask(harness.fleet.LB_HTTPS_URL) for _ in range(6)]
    assert {served_by for _, served_by, _ in answers} == {first, third}, answers


def test_4b_the_host_left_drained_shows_as_drained_in_the_balancer_s_metrics() -> None:
    """What the admin socket says of the second host after its failed deploy, HAProxy's exporter says too: a
    Prometheus sees which backend a failed deploy left out of rotation."""
    first, second, third = harness.WEB
    expected = {first: "UP", second: "DRAIN", third: "UP"}
    # The exporter says DRAIN of a drained server that passes its health check; right after the rollback's reload
    # the check may not have seen the second host up again yet (rise 2 at 1 s), so a few seconds are allowed.
    deadline = time.monotonic() + 15
    while True:
        _, samples = harness.lb_metrics()
        states = {host: harness.lb_server_status(samples, host) for host in harness.WEB}
        if states == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == expected, states


def test_4c_prometheus_sees_the_host_the_failed_deploy_left_drained() -> None:
    """The lab's Prometheus, scraping the balancer's exporter, reads the same: web2 DRAIN, the others UP (its query
    of every server's one state at 1)."""
    first, second, third = harness.WEB
    expected = {first: "UP", second: "DRAIN", third: "UP"}
    deadline = time.monotonic() + 10 * harness.SCRAPE_SECONDS
    while True:
        result = harness.query('haproxy_server_status{job="balancer",proxy="web"} == 1')
        states = {r["metric"]["server"]: r["metric"]["state"] for r in result}
        if states == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert states == expected, states


def test_5_a_failing_migration_stops_the_deploy_before_any_host_switches(tmp_path: Path, report: Report) -> None:
    before = {host: harness.serving(host) for host in harness.WEB}
    failing = harness.release(
        tmp_path / "release4", f"{GREETING}, release 4", migrate='echo "schema change refused" >&2\nexit 3\n'
    )
    run = _deploy(
        tmp_path, report, "failing migration", _app(failing, WORKERS_PER_CORE="1"), "stopped before any switch"
    )
    assert run.rc != 0, run.output[-3000:]
    assert "migrate.sh failed on web1" in run.output and "schema change refused" in run.output, run.output[-3000:]
    assert len(run.batches) == 1, run.batches
    assert report.cases[-1][2] == 0, report.cases[-1]
    assert {host: harness.serving(host) for host in harness.WEB} == before


def test_6_a_certificate_renewed_under_load_through_the_balancer_fails_no_request(report: Report) -> None:
    """certbot renews (forced: the lab's certificate is not due), its deploy hook checks the new one, puts it in place
    and reloads HAProxy gracefully; HTTPS clients meanwhile see no failure, then the new certificate."""
    before = harness.served_certificate()
    expiry_before = harness.lb_certificate_expiry()
    renew = [
        "env",
        "REQUESTS_CA_BUNDLE=/etc/pebble-lab/cert.pem",
        "certbot",
        "renew",
        "--force-renewal",
        "--no-random-sleep-on-renew",
        "--cert-name",
        harness.fleet.ACME_NAME,
    ]
    with harness.FleetLoad(harness.fleet.LB_HTTPS_URL, clients=CLIENTS) as load:
        renewed = harness.on("lb1", *renew)
        time.sleep(3)  # connections accepted around the reload finish on the old workers
    outcome = load.outcome
    report.cases.append(
        ("certificate renewal (HAProxy reload)", outcome.sent, outcome.failed, [], "", renewed.returncode == 0)
    )
    print(f"certificate renewal: {outcome.summary()}")
    assert renewed.returncode == 0, renewed.stdout + renewed.stderr
    assert outcome.failed == 0, outcome.summary()
    assert harness.served_certificate() != before
    # certbot's deploy hook wrote the renewed certificate's expiry for node_exporter.
    expiry_after = harness.lb_certificate_expiry()
    assert expiry_after == {harness.fleet.ACME_NAME: harness.served_certificate_expiry()}
    assert expiry_after != expiry_before, expiry_before
