"""Releases that are immutable: a venv per set of requirements, a refused release that changes nothing that serves, a
rollback to a release's own code, packages and settings under load, and a run stopped between a change and its
restart that the next run finishes.

The tests run in order and leave the host serving the example app as site.yml's defaults deploy it.
"""

from __future__ import annotations

import shlex
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.conftest import EXAMPLE, Report, Watcher, app_list, converge_under_load
from tests.verify.conftest import APP, HELLO, App, Site

DEPLOY = "playbooks/deploy.yml"
ROLLBACK = "playbooks/rollback.yml"
HOME = f"/srv/{APP}"
# A requirement the reliability app does not need: its presence tells which venv serves.
EXTRA_REQUIREMENT = "idna==3.10"
# What `pip freeze` lists, without a pip in the venv: every distribution and its version, sorted.
FREEZE = "import importlib.metadata as m; print(sorted(f'{d.name}=={d.version}' for d in m.distributions()))"


def with_requirement(path: Path, line: str) -> Path:
    """The release at ``path`` with one more line in its requirements.txt."""
    requirements = path / "requirements.txt"
    requirements.write_text(requirements.read_text() + line + "\n")
    return path


def serving_state(host: Any) -> dict[str, str]:
    """What serves, to the byte: the links, the venv's packages, and a digest of every file of the venv and release."""
    digest = "find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum"
    return {
        "app": host.check_output(f"readlink {HOME}/app"),
        "venv": host.check_output(f"readlink {HOME}/venv"),
        # The venv holds no pip (it is filled by the distribution's pip wheel): its packages, as pip freeze lists them.
        "freeze": host.check_output(f"{HOME}/venv/bin/python -c {shlex.quote(FREEZE)}"),
        "venv files": host.check_output(f"cd -P {HOME}/venv && {digest}"),
        "release files": host.check_output(f"cd -P {HOME}/app && {digest}"),
    }


def process_env(host: Any, pid: int) -> dict[str, str]:
    """The environment the process PID runs with (what the service really got, not what its env file says now)."""
    raw = host.check_output(f"tr '\\0' '\\n' < /proc/{pid}/environ")
    return dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)


def test_a_requirements_change_builds_a_new_venv_and_restarts_under_load(
    site: Site, app: App, host: Any, url: str, release: Callable[..., Path], report: Report
) -> None:
    assert site.converge(app_list(release("r1"), LOG_LEVEL="warning"), DEPLOY).rc == 0
    assert app.wait_serving(text=f"{HELLO} r1") == (200, f"{HELLO} r1")
    before, master = serving_state(host), app.main_pid
    changed = app_list(with_requirement(release("r2"), EXTRA_REQUIREMENT), LOG_LEVEL="warning")
    converge_under_load(site, url, report, "requirements change r1 -> r2 (new venv, restart)", changed, DEPLOY)
    assert app.wait_serving(text=f"{HELLO} r2") == (200, f"{HELLO} r2")
    after = serving_state(host)
    assert after["venv"] != before["venv"], "a new set of requirements gets a venv of its own"
    assert EXTRA_REQUIREMENT in after["freeze"] and EXTRA_REQUIREMENT not in before["freeze"]
    assert app.main_pid != master, "a new venv restarts the instance: a running master cannot load new packages"
    assert host.file(f"{HOME}/{before['venv']}/bin/python").exists, "the previous release's venv stays for a rollback"


def test_a_refused_release_leaves_what_serves_byte_for_byte(
    site: Site, app: App, host: Any, release: Callable[..., Path], report: Report
) -> None:
    before, master = serving_state(host), app.main_pid
    broken = with_requirement(
        release("r3", main="raise RuntimeError('release r3 is broken on purpose')\n"), "six==1.17.0"
    )
    result = site.converge(app_list(broken, LOG_LEVEL="info"), DEPLOY)
    after = serving_state(host)
    report.faults.append(
        ("refused release with new requirements", result.rc != 0 and after == before, "serving venv, release unchanged")
    )
    assert result.rc != 0
    assert "release r3 is broken on purpose" in result.output, result.output[-3000:]
    assert after == before, "pip freeze, links and every file of the serving venv and release are as they were"
    assert app.main_pid == master
    assert app.env()["LOG_LEVEL"] == "warning", "the refused release's settings were not written"


def test_rollback_restores_code_packages_and_settings_under_load(
    site: Site, app: App, host: Any, url: str, release: Callable[..., Path], report: Report
) -> None:
    assert app.get() == (200, f"{HELLO} r2")
    # The inventory's app list, as for a deploy (the rollback takes the releases on the host, not these paths).
    apps = app_list(release("r2"), LOG_LEVEL="warning")
    converge_under_load(site, url, report, "rollback r2 -> r1 (venv, code, settings)", apps, ROLLBACK)
    assert app.wait_serving(text=f"{HELLO} r1") == (200, f"{HELLO} r1")
    after = serving_state(host)
    assert EXTRA_REQUIREMENT not in after["freeze"], "r1's own venv serves again"
    assert app.env()["LOG_LEVEL"] == "warning"
    again = site.converge(apps, ROLLBACK)
    assert again.rc == 0, again.output[-3000:]
    assert app.wait_serving(text=f"{HELLO} r2") == (200, f"{HELLO} r2"), "a second rollback goes back to r2"
    assert EXTRA_REQUIREMENT in serving_state(host)["freeze"]


def test_a_rollback_to_a_release_that_never_served_changes_nothing(
    site: Site, host: Any, release: Callable[..., Path]
) -> None:
    before = serving_state(host)
    result = site.converge({**app_list(release("r2")), "app_rollback_release": "local-000000000000"}, ROLLBACK)
    assert result.rc != 0
    assert "app_rollback_release=local-000000000000" in result.output, result.output[-3000:]
    assert serving_state(host) == before


@pytest.mark.parametrize("change", ["env", "code"])
def test_a_run_killed_between_a_change_and_its_restart_is_finished_by_the_next(
    site: Site, app: App, host: Any, release: Callable[..., Path], report: Report, tmp_path: Path, change: str
) -> None:
    """Kill ansible-playbook once the change is on the host and before the instance restarted (or reloaded).

    The killed run changes one thing only (the env file, or the code in the same venv): a rerun then finds nothing else
    that would restart or reload the instance anyway, so only what the killed run recorded can.
    """
    watcher = Watcher(site)
    assert watcher.run("true").returncode == 0
    before = release("k1")
    baseline = site.converge(app_list(before, LOG_LEVEL="warning" if change == "env" else "error"), DEPLOY)
    assert baseline.rc == 0, baseline.output[-3000:]
    assert app.wait_serving(text=f"{HELLO} k1") == (200, f"{HELLO} k1")
    master = app.main_pid
    if change == "env":
        variables = app_list(before, LOG_LEVEL="error")
        changed = f"grep -q '^LOG_LEVEL=.error' /etc/gunicorn/{APP}.env"
    else:
        variables = app_list(release("k2"), LOG_LEVEL="error")
        changed = f"grep -qx k2 {HOME}/app/version.txt"
    watcher.kill_run_when(site.argv(variables, DEPLOY), changed)
    time.sleep(3)  # a reload or restart the run had already asked for shows by now
    if change == "env":
        killed_in_window = app.main_pid == master and process_env(host, master).get("LOG_LEVEL") != "error"
    else:
        killed_in_window = app.get() == (200, f"{HELLO} k1")
    assert killed_in_window, "the run got past the restart before it was killed: nothing to prove"
    assert host.file(f"{HOME}/.wsgiops-pending-{'restart' if change == 'env' else 'reload'}").exists
    rerun = site.converge(variables, DEPLOY)
    assert rerun.rc == 0, rerun.output[-3000:]
    if change == "env":
        assert app.main_pid != master, "the rerun restarted what the killed run changed"
        assert process_env(host, app.main_pid).get("LOG_LEVEL") == "error"
    else:
        assert app.main_pid == master, "a code change reloads"
        assert app.wait_serving(text=f"{HELLO} k2") == (200, f"{HELLO} k2"), "the rerun reloaded onto the new code"
    third = site.converge(variables, DEPLOY)
    report.faults.append(
        (
            f"a run killed between its {change} change and the {'restart' if change == 'env' else 'reload'}",
            third.rc == 0 and third.changed == 0,
            f"rerun applied it; the run after reported changed={third.changed}",
        )
    )
    assert third.rc == 0 and third.changed == 0, third.output[-3000:]


PROBE = "/opt/uidprobe"
PROBE_SETUP = """import os
import setuptools

if os.geteuid() == 0:
    raise SystemExit("uidprobe: built as root")
setuptools.setup(name="uidprobe", version="1.0", py_modules=[])
"""


def test_a_release_s_requirements_are_built_as_the_app_user_not_root(
    site: Site, app: App, host: Any, release: Callable[..., Path], tmp_path: Path
) -> None:
    """A requirement's build script runs code the app ships: never as root (this one refuses to build as root)."""
    source = tmp_path / "uidprobe-1.0"
    source.mkdir()
    (source / "setup.py").write_text(PROBE_SETUP)
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: uidprobe\nVersion: 1.0\n")
    sdist = tmp_path / "uidprobe-1.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        archive.add(source, arcname=source.name)
    host.run_expect([0], f"install -d -m 0755 {PROBE}")
    host.ansible("ansible.builtin.copy", f"src={sdist} dest={PROBE}/{sdist.name} mode=0644", check=False, become=True)
    try:
        probe = with_requirement(release("r5"), f"uidprobe @ file://{PROBE}/{sdist.name}")
        result = site.converge(app_list(probe, LOG_LEVEL="warning"), DEPLOY)
        assert result.rc == 0, result.output[-3000:]
        assert app.wait_serving(text=f"{HELLO} r5") == (200, f"{HELLO} r5")
        assert "uidprobe" in serving_state(host)["freeze"]
        owners = host.check_output(f"find -L {HOME}/venv -maxdepth 3 ! -user root -printf '%p %u\\n' | head -5")
        assert owners == "", f"the built venv is root's, the app can only read it: {owners}"
    finally:
        host.run(f"rm -rf {PROBE}")


def test_back_to_the_example(site: Site, app: App) -> None:
    result = site.converge({"app_list": [EXAMPLE]})
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving() == (200, HELLO)
