"""Secrets: a secret_env value reaches the service's env file and nothing else (not Ansible's output, not an error
message); the env file is readable by root and the app's group only; the service user owns nothing it could change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
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


LEAKY_MAIN = """\
import os

from flask import Flask

print("the token is", os.environ.get("API_TOKEN"), flush=True)  # an app that logs its secret at import
app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello World from Flask"
"""


def test_a_failing_deploy_shows_no_secret_at_any_verbosity(
    site: Site, host: Any, release: Callable[..., Path], report: Report
) -> None:
    """A release with a secret fails its health check: the output at default and at -vvv --diff, the journal lines."""
    leaky = release("leaky", main=LEAKY_MAIN)
    extra = {"app_list": [{"name": APP, "path": str(leaky), "secret_env": {"API_TOKEN": SECRET}, "health_path": "/x"}]}
    outputs = {
        verbosity: site.converge(extra, args=flags)
        for verbosity, flags in (("default", ()), ("-vvv --diff", ("-vvv", "--diff")))
    }
    clean = all(result.rc != 0 and SECRET not in result.output for result in outputs.values())
    report.bad_inputs.append(("a failing deploy with a secret: the secret in no output (default, -vvv --diff)", clean))
    for verbosity, result in outputs.items():
        assert result.rc != 0, f"{verbosity}: the health check should have failed"
        assert SECRET not in result.output, f"the secret is in the {verbosity} output"
    # The journal lines the role shows did carry the app's line, masked.
    assert "the token is ***" in outputs["default"].output, outputs["default"].output[-3000:]
    assert App(host, APP).wait_serving() == (200, HELLO)  # the previous release serves again
