"""The converged host as site.yml leaves it by default: the example app as a hardened, running systemd service."""

from __future__ import annotations

import re
from typing import Any

from tests.verify.conftest import HELLO, App, wait_for

EXPOSURE_LIMIT = 2.0


def test_unit_is_enabled_and_active(host: Any, app: App) -> None:
    service = host.service(app.unit)
    assert service.is_enabled
    assert service.is_running
    assert app.prop("Type") == "notify"


def test_it_serves_hello_world_on_port_80(app: App) -> None:
    assert app.get(80) == (200, HELLO)


def test_master_runs_vcpus_times_workers_per_core_meinheld_workers(host: Any, app: App) -> None:
    expected = app.expected_workers()
    assert wait_for(app.workers, lambda n: n == expected) == expected
    cmdline = host.file(f"/proc/{app.main_pid}/cmdline").content_string.replace("\0", " ")
    assert "-m gunicorn" in cmdline
    assert "egg:meinheld#gunicorn_worker" in cmdline


def test_service_user_is_not_root_and_cannot_log_in(host: Any, app: App) -> None:
    user = host.check_output(f"ps -o user= -p {app.main_pid}").strip()
    assert user == app.name
    assert host.user(user).uid != 0
    assert host.user(user).shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


def test_env_file_is_0640_root_and_the_app_group(host: Any, app: App) -> None:
    env_file = host.file(f"/etc/gunicorn/{app.name}.env")
    assert env_file.mode == 0o640
    assert env_file.user == "root"
    assert env_file.group == app.name


def test_the_service_user_owns_nothing_of_its_code_or_venv(host: Any, app: App) -> None:
    assert host.check_output(f"find /srv/{app.name} -user {app.name} -print") == ""
    assert host.check_output(f"find /srv/{app.name} -perm -o+w ! -type l -print") == ""


def test_control_socket_is_in_the_runtime_directory(host: Any, app: App) -> None:
    assert host.file(f"/run/gunicorn/{app.name}/gunicorn.ctl").is_socket


def test_port_80_without_root_and_without_capabilities(host: Any, app: App) -> None:
    """systemd binds port 80 (gunicorn@NAME.socket) and passes it in; the service keeps no capability at all."""
    assert app.prop("AmbientCapabilities") == ""
    assert app.prop("CapabilityBoundingSet") == ""
    socket_unit = host.service(f"gunicorn@{app.name}.socket")
    assert socket_unit.is_running
    assert socket_unit.is_enabled
    assert "0.0.0.0:80" in host.check_output(f"systemctl show -p Listen --value gunicorn@{app.name}.socket")


def test_the_app_link_points_at_a_release(host: Any, app: App) -> None:
    link = host.file(f"/srv/{app.name}/app")
    assert link.is_symlink
    assert link.linked_to.startswith(f"/srv/{app.name}/releases/local-")


def test_security_exposure_is_at_most_2(host: Any, app: App) -> None:
    out = host.check_output(f"systemd-analyze security --no-pager {app.unit}")
    figure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out).group(1))
    print(f"systemd-analyze security {app.unit}: {figure}")
    assert figure <= EXPOSURE_LIMIT


def test_journal_carries_the_resolved_settings(host: Any, app: App) -> None:
    journal = host.check_output(f"journalctl -u {app.unit} -b --no-pager -o cat")
    assert "resolved settings" in journal


def test_the_example_apps_metrics_are_served_on_loopback_only(host: Any, app: App) -> None:
    """The default app list's METRICS_BIND: the master counts what the app answered, on 127.0.0.1:9101 only."""
    before = app.get(9101, "/metrics")
    assert before[0] == 200
    for _ in range(3):
        assert app.get(80) == (200, HELLO)
    status, text = app.get(9101, "/metrics")
    counted = re.search(r'^gunicorn_requests_total\{app="example",status="200"\} (\d+)$', text, re.M)
    earlier = re.search(r'^gunicorn_requests_total\{app="example",status="200"\} (\d+)$', before[1], re.M)
    assert status == 200 and counted, text
    assert int(counted.group(1)) >= (int(earlier.group(1)) if earlier else 0) + 3
    assert f'gunicorn_workers{{app="example"}} {app.workers()}' in text
    listening = host.check_output("ss -Htln 'sport = :9101'")
    assert [line.split()[3] for line in listening.splitlines()] == ["127.0.0.1:9101"]
