"""A worker that outgrows WORKER_MAX_MEMORY is retired and replaced; the master and the other workers stay."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.conftest import Report, app_list
from tests.verify.conftest import HELLO, App, Site, wait_for

DEPLOY = "playbooks/deploy.yml"
LIMIT_MIB = 120


def worker_pids(host: Any, master: int) -> set[int]:
    return {int(pid) for pid in host.check_output(f"ps --ppid {master} -o pid=").split()}


def test_a_worker_above_worker_max_memory_is_replaced_and_the_master_stays(
    site: Site, app: App, host: Any, release: Callable[..., Path], report: Report
) -> None:
    result = site.converge(app_list(release("v6"), WORKER_MAX_MEMORY=str(LIMIT_MIB)), DEPLOY)
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving(text=f"{HELLO} v6") == (200, f"{HELLO} v6")
    master = app.main_pid
    expected = app.expected_workers()
    before = wait_for(lambda: worker_pids(host, master), lambda pids: len(pids) == expected)
    since = host.check_output("date +%s")
    for _ in range(2 * expected):  # 64 MiB per request: some worker answers twice and passes the limit
        assert app.get(path="/leak?mb=64")[0] == 200
    retired = wait_for(
        lambda: host.check_output(f"journalctl -u {app.unit} --since @{since} --no-pager -o cat"),
        lambda journal: "above WORKER_MAX_MEMORY" in journal,
        timeout=60,
    )
    after = wait_for(lambda: worker_pids(host, master), lambda pids: len(pids) == expected and pids != before)
    survived = app.main_pid == master and len(after) == expected and app.get()[0] == 200
    report.faults.append(("worker above WORKER_MAX_MEMORY", survived, f"{len(before - after)} worker(s) replaced"))
    assert "above WORKER_MAX_MEMORY=120" in retired
    assert app.main_pid == master
    assert len(after) == expected and after != before
    assert app.get() == (200, f"{HELLO} v6")
