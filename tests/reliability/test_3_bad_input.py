"""Bad input: every invalid role variable fails the play before any change, with one message naming it, and the
serving app keeps serving; every invalid runtime variable makes the unit fail with one journal line naming it.

Runs after the deploy tests and restores the example app exactly as site.yml's defaults deploy it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.reliability.conftest import Report
from tests.verify.conftest import APP, EXAMPLE_DIR, HELLO, App, Site, wait_for

EXAMPLE = {"name": APP, "path": str(EXAMPLE_DIR)}
ENV_FILE = f"/etc/gunicorn/{APP}.env"


def apps(*items: dict[str, Any]) -> dict[str, Any]:
    return {"app_list": list(items)}


def with_env(**env: str) -> dict[str, Any]:
    return apps({**EXAMPLE, "env": env})


ROLE_INPUTS = [
    ("WORKERS_PER_CORE wrong type", with_env(WORKERS_PER_CORE="abc"), "WORKERS_PER_CORE='abc' is invalid"),
    ("WEB_CONCURRENCY out of range", with_env(WEB_CONCURRENCY="0"), "WEB_CONCURRENCY='0' is invalid"),
    ("LOG_LEVEL unknown choice", with_env(LOG_LEVEL="loud"), "LOG_LEVEL='loud' is invalid"),
    ("WORKER_MAX_MEMORY with a unit", with_env(WORKER_MAX_MEMORY="1G"), "WORKER_MAX_MEMORY='1G' is invalid"),
    ("BIND to an inherited fd", with_env(BIND="fd://3"), "BIND='fd://3' is invalid"),
    ("GUNICORN_CONF outside the app", with_env(GUNICORN_CONF="/etc/passwd"), "GUNICORN_CONF='/etc/passwd' is invalid"),
    ("port out of range", apps({**EXAMPLE, "port": 70000}), "port=70000 is invalid"),
    ("port held by sshd", apps({**EXAMPLE, "port": 22}), "port 22 is held by"),
    ("duplicate app name", apps(EXAMPLE, {**EXAMPLE, "port": 8081}), "name='example' is a duplicate"),
    ("duplicate port", apps(EXAMPLE, {**EXAMPLE, "name": "other"}), "port 80 is already used by app 'example'"),
    ("name not a unit instance", apps({**EXAMPLE, "name": "Bad Name"}), "name='Bad Name' is invalid"),
    # These two are refused by the role's meta/argument_specs.yml, in Ansible's words.
    ("unknown state", apps({**EXAMPLE, "state": "gone"}), "value of state must be one of: present, absent, got: gone"),
    ("app_list not a list", {"app_list": "example"}, "option 'app_list' is of type str"),
    ("apps root outside the allowed roots", {"server_apps_root": "/etc"}, "server_apps_root=/etc is invalid"),
    ("stop timeout wrong type", {"server_stop_timeout_sec": "soon"}, "server_stop_timeout_sec"),
    ("pip index not a URL", {"interpreter_pip_index_url": "ftp:/x"}, "interpreter_pip_index_url"),
    ("keep no release", {"app_keep_releases": 0}, "app_keep_releases=0 is invalid"),
]


@pytest.fixture(scope="module")
def restored(site: Site, host: Any) -> App:
    """The example app as the defaults deploy it, serving: the state every case below must leave untouched."""
    app = App(host, APP)
    result = site.converge()
    assert result.rc == 0, result.output[-3000:]
    assert app.wait_serving() == (200, HELLO)
    return app


def assert_rejected_unchanged(
    site: Site, restored: App, host: Any, report: Report, case: str, message: str, **converge: Any
) -> None:
    """Run the play (site.converge's arguments) and hold it to failing with message, the host and the app untouched."""
    master, env_before = restored.main_pid, host.file(ENV_FILE).sha256sum
    result = site.converge(**converge)
    rejected = result.rc != 0 and message in result.output and "changed=0" in result.output
    report.bad_inputs.append((f"role: {case}", rejected))
    assert result.rc != 0
    assert message in result.output, result.output[-3000:]
    assert "changed=0" in result.output, "the play changed the host before it failed"
    assert host.file(ENV_FILE).sha256sum == env_before
    assert restored.main_pid == master
    assert restored.get() == (200, HELLO)


@pytest.mark.parametrize(("case", "extra_vars", "message"), ROLE_INPUTS, ids=[case for case, _, _ in ROLE_INPUTS])
def test_invalid_role_input_changes_nothing(
    site: Site, restored: App, host: Any, report: Report, case: str, extra_vars: dict[str, Any], message: str
) -> None:
    assert_rejected_unchanged(site, restored, host, report, case, message, extra_vars=extra_vars)


def test_the_app_role_alone_names_what_it_needs(
    site: Site, restored: App, host: Any, report: Report, tmp_path: Path
) -> None:
    """An operator's own playbook with only the app role: it needs the server role's facts, and says so first."""
    playbook = tmp_path / "app-alone.yml"
    playbook.write_text(
        yaml.safe_dump([{"name": "The app role alone", "hosts": "all", "become": True, "roles": ["app"]}])
    )
    assert_rejected_unchanged(
        site,
        restored,
        host,
        report,
        "the app role without the server role",
        "server_stack is undefined: the app role deploys onto the server role's stack",
        playbook=str(playbook),
    )


RUNTIME_INPUTS = [
    ("WORKERS_PER_CORE", "abc", "WORKERS_PER_CORE='abc' is invalid"),
    ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY='0' is invalid"),
    ("MAX_WORKERS", "-1", "MAX_WORKERS='-1' is invalid"),
    ("PORT", "http", "PORT='http' is invalid"),
    ("BIND", "0.0.0.0:99999", "BIND='0.0.0.0:99999' is invalid"),
    ("LOG_LEVEL", "loud", "LOG_LEVEL='loud' is invalid"),
    ("TIMEOUT", "-1", "TIMEOUT='-1' is invalid"),
    ("GRACEFUL_TIMEOUT", "soon", "GRACEFUL_TIMEOUT='soon' is invalid"),
    ("KEEP_ALIVE", "x", "KEEP_ALIVE='x' is invalid"),
    ("WORKER_MAX_MEMORY", "1G", "WORKER_MAX_MEMORY='1G' is invalid"),
    ("PRELOAD", "maybe", "PRELOAD='maybe' is invalid"),
    ("MODULE_NAME", "nope", "APP_MODULE='nope:app' does not import"),
    ("APP_MODULE", "main", "APP_MODULE='main' is invalid"),
    ("GUNICORN_CONF", "missing.py", "GUNICORN_CONF='missing.py' is invalid"),
    ("PRE_START_PATH", "missing.sh", "PRE_START_PATH='missing.sh' is invalid"),
]


@pytest.mark.parametrize(("name", "value", "line"), RUNTIME_INPUTS, ids=[n for n, _, _ in RUNTIME_INPUTS])
def test_invalid_runtime_value_fails_the_unit_with_one_clear_line(
    restored: App, host: Any, report: Report, name: str, value: str, line: str
) -> None:
    """An env file edited by hand: the start fails (exit 2, no restart loop) and `systemctl status` says why."""
    unit = restored.unit
    host.run(f"cp -p {ENV_FILE} {ENV_FILE}.saved && echo '{name}={value}' >> {ENV_FILE}")
    try:
        since = host.check_output("date +%s")
        host.run(f"systemctl restart {unit}")
        state = wait_for(lambda: host.check_output(f"systemctl is-active {unit} || true"), lambda s: s == "failed")
        status = host.run(f"systemctl status --no-pager {unit}").stdout  # its default 10 lines
        journal = host.check_output(f"journalctl -u {unit} --since @{since} --no-pager -o cat")
        rejected = state == "failed" and line in status
        report.bad_inputs.append((f"runtime: {name}={value}", rejected))
        assert state == "failed"
        assert line in status, status
        assert sum(line in entry for entry in journal.splitlines()) == 1, journal
        assert host.check_output(f"systemctl show -p ExecMainStatus --value {unit}") == "2"
    finally:
        host.run(f"mv {ENV_FILE}.saved {ENV_FILE} && systemctl reset-failed {unit} && systemctl start {unit}")
    assert restored.wait_serving() == (200, HELLO)
