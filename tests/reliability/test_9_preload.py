"""PRELOAD=on under load: turning it on, a code deploy, a rollback and a settings change each fail no request, and
each serves the new answer afterwards (a reload would fork the master's old code: the role restarts such an app,
with the socket held by systemd). The workers share the preloaded app: less private memory each.

The tests run in order and leave the host serving the example app as site.yml's defaults deploy it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.conftest import EXAMPLE, Report, app_list, converge_under_load
from tests.verify.conftest import HELLO, App, Site, wait_for

DEPLOY = "playbooks/deploy.yml"
ROLLBACK = "playbooks/rollback.yml"
MARKER = "/run/gunicorn/example/preloaded"


def private_mib(host: Any, master: int, workers: int) -> list[float]:
    """Each worker's private memory (Private_Clean + Private_Dirty of smaps_rollup), in MiB."""
    pids = wait_for(
        lambda: host.check_output(f"ps --ppid {master} -o pid=").split(), lambda found: len(found) == workers
    )
    out = []
    for pid in pids:
        rollup = host.check_output(f"cat /proc/{pid}/smaps_rollup")
        fields = dict(line.split(":", 1) for line in rollup.splitlines() if ":" in line and "-" not in line[:12])
        out.append(sum(int(fields[key].split()[0]) for key in ("Private_Clean", "Private_Dirty")) / 1024)
    return out


def warm(app: App, requests: int = 20) -> None:
    """The same requests through every worker before memory is read: first requests touch pages of their own."""
    for _ in range(requests):
        assert app.get()[0] == 200


def test_preload_on_restarts_under_load_and_shares_the_app(
    site: Site, app: App, host: Any, url: str, release: Callable[..., Path], report: Report
) -> None:
    assert site.converge(app_list(release("p1")), DEPLOY).rc == 0
    assert app.wait_serving(text=f"{HELLO} p1") == (200, f"{HELLO} p1")
    assert not host.file(MARKER).exists
    workers = app.expected_workers()
    warm(app)
    alone = private_mib(host, app.main_pid, workers)
    master = app.main_pid
    converge_under_load(
        site, url, report, "PRELOAD=on (restart, socket held by systemd)", app_list(release("p1"), PRELOAD="on"), DEPLOY
    )
    assert app.main_pid != master
    assert host.file(MARKER).is_file, "the master says it preloaded"
    warm(app)
    shared = private_mib(host, app.main_pid, workers)
    assert max(shared) < 0.7 * min(alone), f"private MiB per worker: {shared} preloaded, {alone} not"


def test_a_code_deploy_of_a_preloaded_app_restarts_and_serves_the_new_code(
    site: Site, app: App, url: str, release: Callable[..., Path], report: Report
) -> None:
    master = app.main_pid
    result, _ = converge_under_load(
        site, url, report, "code deploy p1 -> p2, preloaded (restart)", app_list(release("p2"), PRELOAD="on"), DEPLOY
    )
    assert "runs preloaded" in result.output, "the plan says why it restarts"
    assert app.wait_serving(text=f"{HELLO} p2") == (200, f"{HELLO} p2"), "the new code, not the master's old one"
    assert app.main_pid != master


def test_a_rollback_of_a_preloaded_app_serves_the_previous_code(
    site: Site, app: App, url: str, release: Callable[..., Path], report: Report
) -> None:
    converge_under_load(
        site, url, report, "rollback p2 -> p1, preloaded (restart)", app_list(release("p2"), PRELOAD="on"), ROLLBACK
    )
    assert app.wait_serving(text=f"{HELLO} p1") == (200, f"{HELLO} p1")


def test_a_settings_change_of_a_preloaded_app_fails_no_request(
    site: Site, app: App, url: str, release: Callable[..., Path], report: Report
) -> None:
    master = app.main_pid
    settings = app_list(release("p1"), PRELOAD="on", LOG_LEVEL="warning")
    converge_under_load(site, url, report, "LOG_LEVEL change, preloaded (restart)", settings, DEPLOY)
    assert app.main_pid != master
    assert app.env()["LOG_LEVEL"] == "warning"
    assert app.wait_serving(text=f"{HELLO} p1") == (200, f"{HELLO} p1")


def test_back_to_the_example_without_preload(site: Site, app: App, host: Any) -> None:
    result = site.converge({"app_list": [EXAMPLE]})
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving() == (200, HELLO)
    assert not host.file(MARKER).exists, "a master started without PRELOAD removes the marker"
