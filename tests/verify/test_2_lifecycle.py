"""Changes through site.yml: restart on env changes, graceful reload on code changes, several apps, git and pip
sources, removal, reboot.

The tests run in file order and each leaves the host in the state the next one starts from; the last restores the
default converge (the example app only, default settings).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.verify import sources
from tests.verify.conftest import APP, EXAMPLE_DIR, HELLO, App, Site, wait_for

WPC1 = {"WORKERS_PER_CORE": "1"}
SECOND = "second"
SECOND_PORT = 8081
FROM_GIT, FROM_GIT_PORT, FROM_GIT_HELLO = "fromgit", 8082, f"{HELLO} via git"
FROM_PIP, FROM_PIP_PORT, FROM_PIP_HELLO = "frompip", 8083, f"{HELLO} via pip"
HOST_SOURCES = "/opt/verify-sources"  # where the git and pip artifacts land on the host


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


@pytest.fixture(scope="module")
def shipped(host: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[sources.GitSource]:
    """The git and pip artifacts, made on the controller and unpacked on the host; removed from it afterwards."""
    workdir = tmp_path_factory.mktemp("sources")
    git = sources.git_source(workdir, FROM_GIT_HELLO)
    wheel = sources.wheel(workdir, FROM_PIP_HELLO)
    host.ansible("ansible.builtin.file", f"path={HOST_SOURCES} state=directory mode=0755", check=False, become=True)
    host.ansible("ansible.builtin.unarchive", f"src={git.tarball} dest={HOST_SOURCES}", check=False, become=True)
    host.ansible("ansible.builtin.copy", f"src={wheel} dest={HOST_SOURCES}/{sources.WHEEL}", check=False, become=True)
    yield git
    host.ansible("ansible.builtin.file", f"path={HOST_SOURCES} state=absent", check=False, become=True)


def other_sources(git: sources.GitSource) -> list[dict[str, Any]]:
    """An app from a git URL and tag, and one from a pip requirement, beside the example app's local source."""
    return [
        {"name": FROM_GIT, "repo": f"file://{HOST_SOURCES}/{git.repo_name}", "version": git.tag, "port": FROM_GIT_PORT},
        {
            "name": FROM_PIP,
            "requirement": f"{sources.PACKAGE} @ file://{HOST_SOURCES}/{sources.WHEEL}",
            "port": FROM_PIP_PORT,
            "env": {"APP_MODULE": f"{sources.PACKAGE}.main:app"},
        },
    ]


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


def test_apps_from_a_git_tag_and_a_pip_requirement(site: Site, app: App, host: Any, shipped: sources.GitSource) -> None:
    apps = [example(), *other_sources(shipped)]
    result = site.converge({"app_list": apps})
    assert result.rc == 0, result.output[-3000:]
    from_git, from_pip = App(host, FROM_GIT), App(host, FROM_PIP)
    assert from_git.wait_serving(FROM_GIT_PORT, FROM_GIT_HELLO) == (200, FROM_GIT_HELLO), "the tag, not the branch head"
    assert from_pip.wait_serving(FROM_PIP_PORT, FROM_PIP_HELLO) == (200, FROM_PIP_HELLO)
    assert host.file(f"/srv/{FROM_GIT}/app").linked_to == f"/srv/{FROM_GIT}/releases/git-{shipped.commit[:12]}"
    assert host.file(f"/srv/{FROM_PIP}/app").linked_to.startswith(f"/srv/{FROM_PIP}/releases/pip-")
    masters = (from_git.main_pid, from_pip.main_pid)
    again = site.converge({"app_list": apps})
    assert (again.rc, again.changed) == (0, 0), again.output[-3000:]
    assert (from_git.main_pid, from_pip.main_pid) == masters
    assert app.get() == (200, HELLO)


def test_state_absent_removes_the_app_completely(site: Site, app: App, host: Any) -> None:
    gone = [SECOND, FROM_GIT, FROM_PIP]
    apps = [example(), *({"name": name, "state": "absent"} for name in gone)]
    result = site.converge({"app_list": apps})
    assert result.rc == 0, result.output[-3000:]
    for name, port in zip(gone, [SECOND_PORT, FROM_GIT_PORT, FROM_PIP_PORT], strict=True):
        unit = f"gunicorn@{name}.service"
        assert not host.service(unit).is_running, name
        assert not host.service(unit).is_enabled, name
        assert not host.service(f"gunicorn@{name}.socket").is_running, name
        assert not host.file(f"/etc/systemd/system/gunicorn@{name}.socket.d").exists, name
        assert not host.file(f"/etc/gunicorn/{name}.env").exists, name
        assert not host.file(f"/srv/{name}").exists, name
        assert not host.user(name).exists, name
        assert not host.group(name).exists, name
        assert App(host, name).get(port)[0] == 0, name
    assert app.get() == (200, HELLO)
    again = site.converge({"app_list": apps})  # absent apps stay in an operator's list: a rerun must converge
    assert (again.rc, again.changed) == (0, 0), again.output[-3000:]


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
