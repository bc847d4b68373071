"""Deploys under load: a code deploy reloads with zero failed requests, a settings change restarts with zero failed
requests (systemd holds the socket), a release that cannot start or fails its health check never takes over.

The tests run in order and leave the host serving the example app as site.yml's defaults deploy it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import Report, app_list, converge_under_load
from tests.reliability.load import Load
from tests.verify.conftest import HELLO, App, Site, wait_for

DEPLOY = "playbooks/deploy.yml"


def link_target(host: Any) -> str:
    return host.check_output("readlink /srv/example/app")


def test_code_deploy_under_load_fails_no_request(
    site: Site, app: App, host: Any, url: str, release: Callable[..., Path], report: Report
) -> None:
    assert site.converge(app_list(release("v1")), DEPLOY).rc == 0
    assert app.wait_serving(text=f"{HELLO} v1") == (200, f"{HELLO} v1")
    master, before = app.main_pid, link_target(host)
    _, outcome = converge_under_load(
        site, url, report, "code deploy v1 -> v2 (graceful reload)", app_list(release("v2")), DEPLOY
    )
    assert outcome.sent > 0
    assert app.wait_serving(text=f"{HELLO} v2") == (200, f"{HELLO} v2")
    assert app.main_pid == master, "a code deploy reloads (HUP), it does not restart"
    after = link_target(host)
    assert after != before
    assert host.file(f"/srv/example/{before}").is_directory, "the previous release stays beside the new one"


def test_settings_change_restarts_under_load_and_fails_no_request(
    site: Site, app: App, url: str, release: Callable[..., Path], report: Report
) -> None:
    master = app.main_pid
    settings = app_list(release("v2"), LOG_LEVEL="warning")
    converge_under_load(site, url, report, "LOG_LEVEL change (restart, socket held by systemd)", settings, DEPLOY)
    assert app.main_pid != master, "an env file change restarts the service"
    assert app.env()["LOG_LEVEL"] == "warning"


def test_a_release_that_cannot_import_never_serves(
    site: Site, app: App, host: Any, release: Callable[..., Path], report: Report
) -> None:
    master, serving = app.main_pid, link_target(host)
    broken = release("v3", main="raise RuntimeError('release v3 is broken on purpose')\n")
    result = site.converge(app_list(broken, LOG_LEVEL="warning"), DEPLOY)
    survived = result.rc != 0 and app.get() == (200, f"{HELLO} v2")
    report.faults.append(("release that fails to import", survived, "refused before the link moved"))
    assert result.rc != 0
    assert "release v3 is broken on purpose" in result.output, result.output[-3000:]
    assert "cannot start" in result.output
    assert link_target(host) == serving
    assert app.main_pid == master
    assert app.get() == (200, f"{HELLO} v2")


def test_a_release_that_fails_its_health_check_is_rolled_back_under_load(
    site: Site, app: App, host: Any, url: str, release: Callable[..., Path], report: Report
) -> None:
    """On one host the bad release serves from its start until the health check gives up: the report counts how many
    requests it answered (behind a balancer the host is drained first and it answers none, see tests/fleet)."""
    serving, settings = link_target(host), app.env()
    unhealthy = release("v4")
    main = (unhealthy / "main.py").read_text()
    (unhealthy / "main.py").write_text(
        main.replace('    return f"Hello World from Flask {VERSION}"', '    return "v4 is unhealthy on purpose", 503')
    )
    # A settings change with the bad code: both must go back.
    with Load(url) as load:
        result = site.converge(app_list(unhealthy, LOG_LEVEL="info"), DEPLOY)
        back = app.wait_serving(text=f"{HELLO} v2")
    answered_by_bad = load.outcome.bodies["v4 is unhealthy on purpose"]
    others_failed = load.outcome.failed - load.outcome.statuses[503]
    report.load.append(
        (
            f"release failing its health check, rolled back ({answered_by_bad} answered by it)",
            load.outcome.sent,
            others_failed,
        )
    )
    report.faults.append(
        (
            "release that fails its health check",
            result.rc != 0 and back[0] == 200,
            f"rolled back with its settings; it answered {answered_by_bad} of {load.outcome.sent} requests first",
        )
    )
    assert result.rc != 0
    assert "v4 is unhealthy on purpose" in result.output, result.output[-3000:]
    assert "rolled back to " + serving in result.output
    assert link_target(host) == serving
    assert back == (200, f"{HELLO} v2")
    assert app.env() == settings, "the env file went back with the code"
    assert others_failed == 0, load.outcome.summary()


def test_the_next_good_deploy_works(site: Site, app: App, host: Any, release: Callable[..., Path]) -> None:
    result = site.converge(app_list(release("v5"), LOG_LEVEL="warning"), DEPLOY)
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving(text=f"{HELLO} v5") == (200, f"{HELLO} v5")
    releases = host.check_output("ls /srv/example/releases").split()
    assert len(releases) <= 3, f"app_keep_releases=3 keeps three releases: {releases}"


@pytest.mark.parametrize("victim", ["master", "worker"])
def test_kill_9(app: App, host: Any, url: str, report: Report, victim: str) -> None:
    """kill -9 of the master: systemd restarts it and it answers within 10 s; of a worker: the master replaces it."""
    expected = app.expected_workers()
    assert wait_for(app.workers, lambda n: n == expected) == expected
    master = app.main_pid
    pid = master if victim == "master" else int(host.check_output(f"ps --ppid {master} -o pid=").split()[0])
    with Load(url, clients=2) as load:
        killed_at = time.monotonic()
        host.run(f"kill -9 {pid}")
        status = wait_for(app.get, lambda r: r[0] == 200, timeout=60, step=0.2)
        answered_after = time.monotonic() - killed_at
        workers = wait_for(app.workers, lambda n: n == expected, timeout=60)
    survived = status[0] == 200 and answered_after <= 10 and workers == expected
    detail = f"answered {answered_after:.1f}s after the kill, {workers} workers again"
    report.load.append((f"kill -9 of the {victim}", load.outcome.sent, load.outcome.failed))
    report.faults.append((f"kill -9 of the {victim}", survived, detail))
    assert status[0] == 200
    assert answered_after <= 10, detail
    assert workers == expected
    if victim == "master":
        assert app.main_pid != master
    else:
        assert app.main_pid == master
        # Only the killed worker's requests in flight may fail: at most one per client connection.
        assert load.outcome.failed <= load.clients, load.outcome.summary()
