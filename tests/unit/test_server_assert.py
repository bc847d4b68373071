"""The server role's input check, run for real (ansible-playbook on localhost: its asserts read nothing of the host).

Each hostile value of the security review is refused with its variable named, before any task that changes a host.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

BIN = REPO / ".venv" / "bin"


def assert_play(role: str) -> str:
    """A play on localhost that runs ROLE's `assert` entry point (what the playbooks run before any change)."""
    return f"""\
- name: Check the {role} role's input
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the role's assert entry point
      ansible.builtin.include_role:
        name: {role}
        tasks_from: assert
"""


PLAYBOOK = assert_play("server")


def run_play(tmp_path: Path, play: str, extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """ansible-playbook of PLAY on localhost with EXTRA as extra vars, with this checkout's ansible.cfg."""
    (tmp_path / "play.yml").write_text(play)
    (tmp_path / "vars.json").write_text(json.dumps(extra))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "play.yml", "-e", "@vars.json"],
        cwd=tmp_path,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, None),
        ({"server_apps_root": "/var/lib/apps"}, None),
        ({"server_unit_extra_directives": ["MemoryMax=1G", "CPUQuota=150%"]}, None),
        ({"server_apps_root": "/var/lib"}, "server_apps_root=/var/lib is invalid: that directory is shared"),
        ({"server_apps_root": "/opt"}, "server_apps_root=/opt is invalid: that directory is shared"),
        ({"server_unit_extra_directives": ["MemoryMax=1G\nExecStartPre=+/bin/id"]}, "one-line Directive=value"),
        ({"server_unit_extra_directives": ["ExecStartPre=+/bin/id"]}, "none of which sets who runs the service"),
        ({"server_unit_extra_directives": ["User=root"]}, "none of which sets who runs the service"),
    ],
    ids=["defaults", "own-dir", "extra-ok", "var-lib", "opt", "newline", "exec", "user"],
)
def test_server_input_check(tmp_path: Path, extra: dict[str, object], refused: str | None) -> None:
    result = run_play(tmp_path, PLAYBOOK, extra)
    output = " ".join((result.stdout + result.stderr).split())
    if refused is None:
        assert result.returncode == 0, output[-2000:]
    else:
        assert result.returncode != 0
        assert refused in output, output[-2000:]


@pytest.mark.parametrize(
    ("apps", "refused"),
    [
        (None, False),
        ([{"name": "web", "path": "x", "env": {"LOG_LEVEL": "info"}}], False),
        ([{"name": "web", "path": "x", "secret_env": {"API_TOKEN": "s3"}}], True),
    ],
    ids=["default-apps", "settings-only", "secret"],
)
def test_the_image_build_refuses_secrets(tmp_path: Path, apps: list | None, refused: bool) -> None:
    """image.yml's first play, run alone: an app_list with secret_env values stops the bake before any change."""
    first_play = yaml.safe_load((REPO / "playbooks" / "image.yml").read_text())[0]
    assert first_play["name"].startswith("Refuse secrets in the image")
    play = yaml.safe_dump([{**first_play, "hosts": "localhost"}])
    result = run_play(tmp_path, play, {} if apps is None else {"app_list": apps})
    assert (result.returncode != 0) is refused, result.stdout[-2000:]
    if refused:
        assert "web: secret_env would be baked into every copy of the image" in " ".join(result.stdout.split())
