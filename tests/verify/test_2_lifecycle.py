"""Changes through site.yml: restart on env changes, graceful reload on code changes, several apps, removal, reboot.

The tests run in file order and each leaves the host in the state the next one starts from; the last restores the
default converge (the example app only, default settings).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.verify.conftest import APP, EXAMPLE_DIR, HELLO, App, Site, wait_for

WPC1 = {"WORKERS_PER_CORE": "1"}
SECOND = "second"
SECOND_PORT = 8081


def example(**fields: Any) -> dict[str, Any]:
    return {"name": APP, "path": str(EXAMPLE_DIR), "env": dict(WPC1), **fields}


@pytest.fixture(scope="module")
def changed_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example app whose greeting differs: a code-only change."""
    copy = tmp_path_factory.mktemp("v2") / "example_app"
    shutil.copytree(EXAMPLE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    main = copy / "main.py"
    main.write_text(main.read_text().replace(f'"{HELLO}"', f'"{HELLO} v2"'))
    return copy


def test_changing_workers_per_core_restarts_and_resizes(site: Site, app: App) -> None:
    before = app.main_pid
    result = site.converge({"app_list": [example()]})
    assert result.rc == 0, result.output[-3000:]
    assert app.main_pid != before, "an env file change must restart the instance"
    expected = app.expected_workers()
    assert app.env()["WORKERS_PER_CORE"] == "1"
    assert wait_for(app.workers, lambda n: n == expected) == expected
    assert app.wait_serving() == (200, HELLO)


def test_the_same_input_again_changes_nothing(site: Site, app: App) -> None:
    before = app.main_pid
    result = site.converge({"app_list": [example()]})
    assert (result.rc, result.changed) == (0, 0), result.output[-3000:]
    assert app.main_pid == before


def test_changing_only_code_reloads_without_restart(site: Site, app: App, changed_code: Path) -> None:
    before = app.main_pid
    result = site.converge({"app_list": [example(path=str(changed_code))]})
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving(text=f"{HELLO} v2") == (200, f"{HELLO} v2")
    assert app.main_pid == before, "a code change must reload (HUP), not restart"
    result = site.converge({"app_list": [example()]})
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving() == (200, HELLO)
    assert app.main_pid == before


def test_bad_input_fails_before_any_change(site: Site, app: App, host: Any) -> None:
    before_pid = app.main_pid
    before_env = host.file(f"/etc/gunicorn/{APP}.env").sha256sum
    result = site.converge({"app_list": [example(env={"WORKERS_PER_CORE": "abc"})]})
    assert result.rc != 0
    assert "WORKERS_PER_CORE='abc' is invalid" in result.output
    assert "changed=0" in result.output
    assert host.file(f"/etc/gunicorn/{APP}.env").sha256sum == before_env
    assert app.main_pid == before_pid
    assert app.get() == (200, HELLO)


def test_two_apps_on_one_host(site: Site, app: App, host: Any) -> None:
    result = site.converge({"app_list": [example(), {"name": SECOND, "path": str(EXAMPLE_DIR), "port": SECOND_PORT}]})
    assert result.rc == 0, result.output[-3000:]
    second = App(host, SECOND)
    assert host.service(second.unit).is_running
    assert host.service(second.unit).is_enabled
    assert second.wait_serving(SECOND_PORT) == (200, HELLO)
    assert app.get() == (200, HELLO)
    assert host.user(SECOND).uid != host.user(APP).uid
    assert second.env()["PORT"] == str(SECOND_PORT)


def test_state_absent_removes_the_app_completely(site: Site, app: App, host: Any) -> None:
    result = site.converge({"app_list": [example(), {"name": SECOND, "state": "absent"}]})
    assert result.rc == 0, result.output[-3000:]
    unit = f"gunicorn@{SECOND}.service"
    assert not host.service(unit).is_running
    assert not host.service(unit).is_enabled
    assert not host.service(f"gunicorn@{SECOND}.socket").is_running
    assert not host.file(f"/etc/systemd/system/gunicorn@{SECOND}.socket.d").exists
    assert not host.file(f"/etc/gunicorn/{SECOND}.env").exists
    assert not host.file(f"/srv/{SECOND}").exists
    assert not host.user(SECOND).exists
    assert not host.group(SECOND).exists
    assert App(host, SECOND).get(SECOND_PORT)[0] == 0
    assert app.get() == (200, HELLO)


def test_default_converge_restores_the_example_app(site: Site, app: App) -> None:
    result = site.converge()
    assert result.rc == 0, result.output[-3000:]
    assert "WORKERS_PER_CORE" not in app.env()
    expected = app.expected_workers()
    assert wait_for(app.workers, lambda n: n == expected) == expected


def test_reboot_brings_it_back(site: Site, app: App, host: Any) -> None:
    boot_before = host.file("/proc/sys/kernel/random/boot_id").content_string
    site.reboot()
    assert wait_for(lambda: host.file("/proc/sys/kernel/random/boot_id").content_string, lambda b: b != boot_before)
    assert wait_for(lambda: host.service(app.unit).is_running, bool)
    assert app.wait_serving() == (200, HELLO)
    expected = app.expected_workers()
    assert wait_for(app.workers, lambda n: n == expected) == expected
