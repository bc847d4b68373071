"""Fixtures of the verify suite: the host under test (testinfra) and re-converging it with other variables.

Run against one converged host (the molecule scenarios do this for each lab VM):

    pytest tests/verify --connection=ansible --ansible-inventory=INVENTORY --hosts=HOST

The lifecycle tests re-run playbooks/site.yml against the same inventory and host with other app lists, then restore
the default (the example app, nothing else). Reboot: the ansible reboot module by default; a host that cannot reboot
itself in place (a systemd container) names a controller command in VERIFY_REBOOT_COMMAND.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "example"  # the app role's default app
EXAMPLE_DIR = REPO / "example_app"
HELLO = "Hello World from Flask"
DEFAULT_WORKERS_PER_CORE = 2.0  # gunicorn_conf.py's default, used when the env file does not set it
T = TypeVar("T")


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], timeout: float = 90, step: float = 1) -> T:
    """Poll until the probe's value is accepted (workers boot after systemd sees the master ready); return the last."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not accept(value) and time.monotonic() < deadline:
        time.sleep(step)
        value = probe()
    return value


@dataclass
class Converge:
    """The result of one ansible-playbook run."""

    rc: int
    output: str

    @property
    def changed(self) -> int:
        for line in self.output.splitlines():
            if "changed=" in line and "ok=" in line:
                return int(line.split("changed=")[1].split()[0])
        raise AssertionError("no PLAY RECAP in:\n" + self.output[-3000:])


@dataclass
class Site:
    """Runs playbooks/site.yml against the host under test."""

    inventory: str
    host_name: str
    tmp: Path

    def converge(self, extra_vars: dict[str, Any] | None = None, playbook: str = "playbooks/site.yml") -> Converge:
        variables = dict(extra_vars or {})
        # What the lab's group_vars give every lab host: the controller's extra CAs, so pip in a new venv reaches PyPI
        # through this network's TLS-intercepting proxy. Empty on a machine without extra CAs.
        variables.setdefault("interpreter_ca_certificates", sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
        extra = os.environ.get("VERIFY_EXTRA_VARS")
        vars_file = self.tmp / f"vars-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(variables))
        argv = [str(BIN / "ansible-playbook"), "-i", self.inventory, "-l", self.host_name, playbook]
        argv += ["-e", f"@{extra}"] if extra else []
        argv += ["-e", f"@{vars_file}"]
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=1800)
        return Converge(result.returncode, result.stdout + result.stderr)

    def reboot(self) -> None:
        command = os.environ.get("VERIFY_REBOOT_COMMAND")
        if command:
            argv = shlex.split(command)
        else:
            argv = [str(BIN / "ansible"), "-i", self.inventory, self.host_name, "-m", "ansible.builtin.reboot"]
            argv += ["-a", "reboot_timeout=900"]
        result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=1200)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Site:
    inventory = request.config.getoption("ansible_inventory")
    hosts = request.config.getoption("hosts")
    assert inventory, "pass --ansible-inventory=INVENTORY (the lifecycle tests re-converge the host)"
    assert hosts and "," not in hosts, "pass exactly one host with --hosts=HOST"
    return Site(inventory, hosts.split("://")[-1], tmp_path_factory.mktemp("verify"))


class App:
    """One gunicorn@NAME instance on the host, seen through testinfra."""

    def __init__(self, host: Any, name: str) -> None:
        self.host = host
        self.name = name
        self.unit = f"gunicorn@{name}.service"

    def prop(self, name: str) -> str:
        return self.host.check_output(f"systemctl show -p {name} --value {self.unit}").strip()

    @property
    def main_pid(self) -> int:
        return int(self.prop("MainPID"))

    def workers(self) -> int:
        pid = self.main_pid
        if pid == 0:
            return 0
        return len(self.host.check_output(f"ps --ppid {pid} -o pid=").split())

    def env(self) -> dict[str, str]:
        out = self.host.check_output(f"env -i sh -c 'set -a; . /etc/gunicorn/{self.name}.env; env -0'")
        return dict(item.split("=", 1) for item in out.split("\0") if "=" in item and not item.startswith("PWD="))

    def expected_workers(self) -> int:
        cores = int(self.host.check_output("nproc"))
        return max(1, int(cores * float(self.env().get("WORKERS_PER_CORE", DEFAULT_WORKERS_PER_CORE))))

    def get(self, port: int = 80, path: str = "/") -> tuple[int, str]:
        """Fetch a page on the host itself (python3 is there: Ansible needs it), as (status, body)."""
        script = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=10)\n"
            "    print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code); print('')\n"
            "except OSError as e:\n"
            "    print(0); print(e)\n"
        )
        out = self.host.check_output(f"python3 -c {shlex.quote(script)}")
        status, _, body = out.partition("\n")
        return int(status), body.strip()

    def wait_serving(self, port: int = 80, text: str = HELLO) -> tuple[int, str]:
        return wait_for(lambda: self.get(port), lambda r: r == (200, text))


@pytest.fixture
def app(host: Any) -> App:
    return App(host, APP)
