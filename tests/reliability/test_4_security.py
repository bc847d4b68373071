"""Secrets: a secret_env value reaches the service's env file and nothing else (not Ansible's output, not an error
message); the env file is readable by root and the app's group only; the service user owns nothing it could change."""

from __future__ import annotations

from typing import Any

from tests.reliability.conftest import EXAMPLE, Report
from tests.verify.conftest import APP, HELLO, App, Site

SECRET = "s3cret-token-8f2b71"  # a made-up value the test looks for


def test_secret_values_stay_out_of_ansible_output(site: Site, host: Any, report: Report) -> None:
    result = site.converge({"app_list": [{**EXAMPLE, "secret_env": {"API_TOKEN": SECRET}}]})
    assert result.rc == 0, result.output[-3000:]
    assert SECRET not in result.output
    env_file = host.file(f"/etc/gunicorn/{APP}.env")
    assert f'API_TOKEN="{SECRET}"' in env_file.content_string
    assert (env_file.user, env_file.group, env_file.mode) == ("root", APP, 0o640)
    bad = site.converge({"app_list": [{**EXAMPLE, "secret_env": {"WORKERS_PER_CORE": SECRET}}]})
    rejected = bad.rc != 0 and SECRET not in bad.output and "WORKERS_PER_CORE (value hidden) is invalid" in bad.output
    report.bad_inputs.append(("role: invalid secret_env value (named, not shown)", rejected))
    assert bad.rc != 0
    assert "secret_env.WORKERS_PER_CORE (value hidden) is invalid" in bad.output, bad.output[-3000:]
    assert SECRET not in bad.output
    restored = site.converge()
    assert restored.rc == 0, restored.output[-3000:]
    assert SECRET not in host.file(f"/etc/gunicorn/{APP}.env").content_string


def test_the_service_user_can_write_nothing_but_its_state_and_logs(host: Any) -> None:
    app = App(host, APP)
    assert app.get() == (200, HELLO)
    # Only what the unit gives it to write: its StateDirectory and LogsDirectory (and what it wrote there).
    owned = host.check_output(f"find / -xdev -user {APP} -print 2>/dev/null || true").split()
    own_dirs = (f"/var/lib/gunicorn/{APP}", f"/var/log/gunicorn/{APP}")
    assert [path for path in owned if not path.startswith(own_dirs)] == []
    assert host.run(f"runuser -u {APP} -- touch /srv/{APP}/app/x").rc != 0
