"""What an operator does with systemctl and at boot, on a converged host: settings and secrets dropped into
/etc/gunicorn/NAME.env.d/ (where cloud-init writes them) reach the next start; a hand-edited PORT is refused with one
status line instead of silently serving the old port; `systemctl stop` stops (the socket too) and `restart` keeps the
socket; a prestart that fails until its dependency is up is retried (exit 3) until it passes, while a bad setting
(exit 2) stays failed; a first deploy that connections reach as soon as its socket listens starts the app once, a
deploy that moves the socket while the instance is still starting converges, and one that follows restarts by hand is
not refused by the unit's start limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import EXAMPLE, Report
from tests.verify.conftest import APP, HELLO, App, Site, wait_for

ENV_FILE = f"/etc/gunicorn/{APP}.env"
DROP_IN_DIR = f"/etc/gunicorn/{APP}.env.d"
DROP_IN = f"{DROP_IN_DIR}/50-test.env"
SERVICE = f"gunicorn@{APP}.service"
SOCKET = f"gunicorn@{APP}.socket"
SECRET = "boot-secret-5d1e"  # made up


def sh(host: Any, command: str) -> str:
    result = host.run(command)
    assert result.rc == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def prop(host: Any, unit: str, name: str) -> str:
    return sh(host, f"systemctl show -p {name} --value {unit}")


def restart(host: Any) -> None:
    host.run(f"systemctl reset-failed {SERVICE}; systemctl restart {SERVICE}")


def main_environ(host: Any) -> dict[str, str]:
    pid = prop(host, SERVICE, "MainPID")
    out = sh(host, f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture
def app(host: Any) -> Iterator[App]:
    """The example app serving; afterwards no drop-in, the deploy's env file, and serving again."""
    served = App(host, APP)
    saved = host.file(ENV_FILE).content_string
    yield served
    host.run(f"rm -f {DROP_IN}")
    if host.file(ENV_FILE).content_string != saved:
        host.run(f"cat > {ENV_FILE} <<'EOF'\n{saved}EOF")
    host.run(f"systemctl start {SOCKET}")
    restart(host)
    assert served.wait_serving() == (200, HELLO)


def test_boot_drop_ins_reach_the_next_start_and_secrets_stay_private(host: Any, app: App, report: Report) -> None:
    assert host.file(DROP_IN_DIR).mode == 0o750 and host.file(DROP_IN_DIR).group == APP
    sh(host, f'printf \'WORKERS_PER_CORE="1"\\nAPI_SECRET="{SECRET}"\\n\' > {DROP_IN}')
    sh(host, f"chown root:{APP} {DROP_IN} && chmod 0640 {DROP_IN}")
    restart(host)
    assert app.wait_serving() == (200, HELLO)
    cores = int(sh(host, "nproc"))
    workers = wait_for(app.workers, lambda n: n == cores)
    environ = main_environ(host)
    show = sh(host, f"systemctl show {SERVICE}")
    readable = host.run(f"runuser -u nobody -- cat {DROP_IN}").rc == 0
    ok = workers == cores and environ.get("API_SECRET") == SECRET and SECRET not in show and not readable
    report.faults.append(("boot-time drop-in: WORKERS_PER_CORE=1 and a secret", ok, f"{workers} workers"))
    assert workers == cores  # WORKERS_PER_CORE=1 from the drop-in, over the deploy's default of 2
    assert environ.get("API_SECRET") == SECRET
    assert SECRET not in show
    assert not readable


@pytest.mark.parametrize("where", [ENV_FILE, DROP_IN])
def test_a_hand_edited_port_is_refused_with_one_status_line(host: Any, app: App, where: str, report: Report) -> None:
    sh(host, f"echo 'PORT=8000' >> {where}")
    restart(host)
    state = wait_for(lambda: prop(host, SERVICE, "ActiveState"), lambda s: s == "failed", timeout=60)
    status = host.run(f"systemctl status --no-pager {SERVICE}").stdout  # its default: the last 10 journal lines
    refused = state == "failed" and "say 0.0.0.0:8000 but the unit's socket listens on 0.0.0.0:80" in status
    report.bad_inputs.append((f"hand-edited PORT in {Path(where).name}: refused with one status line", refused))
    assert state == "failed"
    assert prop(host, SERVICE, "ExecMainStatus") == "2"
    assert "say 0.0.0.0:8000 but the unit's socket listens on 0.0.0.0:80" in status, status


def test_stop_stops_and_restart_keeps_the_socket(host: Any, app: App, report: Report) -> None:
    listening_since = prop(host, SOCKET, "ActiveEnterTimestampMonotonic")
    host.run(f"systemctl restart {SERVICE}")
    assert app.wait_serving() == (200, HELLO)
    kept = prop(host, SOCKET, "ActiveEnterTimestampMonotonic") == listening_since
    sh(host, f"systemctl stop {SERVICE}")
    time.sleep(1)
    socket_state = prop(host, SOCKET, "ActiveState")
    answer = app.get()  # a connection after stop must not start it again
    service_state = prop(host, SERVICE, "ActiveState")
    ok = kept and socket_state == "inactive" and answer[0] == 0 and service_state == "inactive"
    report.faults.append(("systemctl stop stops (socket too); restart keeps the socket", ok, socket_state))
    assert kept
    assert (socket_state, service_state) == ("inactive", "inactive")
    assert answer[0] == 0
    sh(host, f"systemctl start {SERVICE}")
    assert prop(host, SOCKET, "ActiveState") == "active"
    assert app.wait_serving() == (200, HELLO)


def test_a_start_that_may_pass_is_retried_and_a_bad_setting_is_not(host: Any, app: App, report: Report) -> None:
    # A prestart that fails until its dependency is up (a database at first boot): exit 3, retried until it passes.
    flag = f"/var/lib/gunicorn/{APP}/db-up"
    release = Path(sh(host, f"readlink -f /srv/{APP}/app"))
    script = 'test -e "$STATE_DIRECTORY/db-up" || { echo "database not up" >&2; exit 1; }\n'
    sh(host, f"printf '%s' '{script}' > /tmp/prestart.sh && install -m 0644 /tmp/prestart.sh {DROP_IN_DIR}/x.sh")
    sh(host, f"printf 'PRE_START_PATH=\"{DROP_IN_DIR}/x.sh\"\\n' > {DROP_IN}")
    try:
        before = int(prop(host, SERVICE, "NRestarts"))
        restart(host)
        retried = wait_for(lambda: int(prop(host, SERVICE, "NRestarts")), lambda n: n > before, timeout=60)
        journal = host.run(f"journalctl -u {SERVICE} -n 20 --no-pager").stdout
        assert retried > before, journal
        assert "database not up" in journal and "may pass by itself: exit 3, retried after 5 s" in journal, journal
        sh(host, f"touch {flag} && chown {APP} {flag}")
        started = time.monotonic()
        answer = app.wait_serving()
        waited = f"served {time.monotonic() - started:.0f} s after the dependency came up"
        report.faults.append(("prestart failing until its dependency is up (exit 3)", answer == (200, HELLO), waited))
        assert answer == (200, HELLO)
    finally:
        host.run(f"rm -f {flag} {DROP_IN_DIR}/x.sh {DROP_IN}")
    assert str(release) == sh(host, f"readlink -f /srv/{APP}/app")
    # A bad setting: exit 2, final (no restarts).
    sh(host, f"printf 'LOG_LEVEL=\"loud\"\\n' > {DROP_IN}")
    restart(host)  # an explicit restart starts NRestarts from 0
    wait_for(lambda: prop(host, SERVICE, "ActiveState"), lambda s: s == "failed", timeout=60)
    failed_at = int(prop(host, SERVICE, "NRestarts"))
    time.sleep(5)
    restarts = int(prop(host, SERVICE, "NRestarts")) - failed_at
    final = (prop(host, SERVICE, "ActiveState"), prop(host, SERVICE, "ExecMainStatus"), restarts)
    report.bad_inputs.append(("LOG_LEVEL=loud in a boot drop-in: exit 2, not retried", final == ("failed", "2", 0)))
    assert final == ("failed", "2", 0)


def test_a_first_deploy_that_connections_reach_at_once_starts_the_app_once(
    site: Site, host: Any, app: App, report: Report
) -> None:
    """A balancer's health checks start a new app through its socket before the role's own start task: that instance
    already runs the new release, and the run must not restart its socket on top (a fleet's first converge did, and
    failed on one host)."""
    removed = site.converge({"app_list": [{**EXAMPLE, "state": "absent"}]}, "playbooks/deploy.yml")
    assert removed.rc == 0, removed.output[-3000:]
    knock = "while :; do (exec 3<>/dev/tcp/127.0.0.1/80) 2>/dev/null; sleep 0.1; done"
    sh(host, f"systemd-run --unit=knock-knock --quiet bash -c '{knock}'")
    try:
        result = site.converge({"app_list": [EXAMPLE]}, "playbooks/deploy.yml")
    finally:
        host.run("systemctl stop knock-knock")
    once = result.rc == 0 and "where it listens changed" not in result.output
    report.faults.append(("first deploy with connections from its first second: started once", once, ""))
    assert result.rc == 0, result.output[-3000:]
    assert "where it listens changed" not in result.output, result.output[-3000:]
    assert app.wait_serving() == (200, HELLO)


def test_a_socket_move_while_the_instance_starts_converges(site: Site, host: Any, app: App, report: Report) -> None:
    """A deploy that changes the port while the instance is still starting (a slow first boot, or a balancer's health
    check that started it through its new socket a moment before) moves the socket and serves there.

    `systemctl restart NAME.socket` cannot: it leaves an instance that is still activating alone, then systemd refuses
    to start a socket whose service is not dead. A fleet's first converge failed so on one of three hosts.
    """
    slow = f"{DROP_IN_DIR}/slow-once.sh"
    flag = f"/var/lib/gunicorn/{APP}/slow-once"
    script = f'if [ ! -e "{flag}" ]; then touch "{flag}"; sleep 600; fi\n'
    sh(host, f"printf '%s' '{script}' > /tmp/slow.sh && install -m 0644 /tmp/slow.sh {slow}")
    sh(host, f"printf 'PRE_START_PATH=\"{slow}\"\\n' > {DROP_IN}")
    try:
        sh(host, f"systemctl restart --no-block {SERVICE}")
        assert wait_for(lambda: prop(host, SERVICE, "ActiveState"), lambda s: s == "activating") == "activating"
        result = site.converge({"app_list": [{**EXAMPLE, "env": {"PORT": "8081"}}]}, "playbooks/deploy.yml")
        answer = app.get(8081)
        moved = result.rc == 0 and answer == (200, HELLO)
        report.faults.append(("port moved while the instance was still starting", moved, prop(host, SOCKET, "Listen")))
        assert result.rc == 0, result.output[-3000:]
        assert answer == (200, HELLO)
    finally:
        host.run(f"systemctl stop {SOCKET} {SERVICE}; rm -f {slow} {flag} {DROP_IN}")
        back = site.converge({"app_list": [EXAMPLE]}, "playbooks/deploy.yml")
        assert back.rc == 0, back.output[-3000:]


def test_a_deploy_starts_an_app_its_start_limit_stopped(site: Site, host: Any, app: App, report: Report) -> None:
    """Restarts by hand, or a few deploys and rollbacks within a minute, reach the unit's StartLimitBurst=; the next
    deploy still restarts the app (a run once failed so, leaving the socket failed and every connection refused)."""
    for _ in range(6):
        host.run(f"systemctl restart {SERVICE}")
    assert prop(host, SERVICE, "Result") == "start-limit-hit"
    try:
        result = site.converge({"app_list": [{**EXAMPLE, "env": {"LOG_LEVEL": "warning"}}]}, "playbooks/deploy.yml")
        answer = app.wait_serving()
        report.faults.append(("a deploy right after the start limit stopped the app", answer == (200, HELLO), ""))
        assert result.rc == 0, result.output[-3000:]
        assert answer == (200, HELLO)
    finally:
        back = site.converge({"app_list": [EXAMPLE]}, "playbooks/deploy.yml")
        assert back.rc == 0, back.output[-3000:]
