"""Fixtures of the verify suite: the host under test (testinfra) and re-converging it with other variables.

Run against one converged host (the molecule scenarios do this for each lab VM):

    pytest tests/verify --connection=ansible --ansible-inventory=INVENTORY --hosts=HOST

The lifecycle tests re-run playbooks/site.yml against the same inventory and host with other app lists, then restore
the default (the example app, nothing else). Reboot: the host reboots itself (Site.reboot); a host that cannot reboot
in place (a systemd container) names a controller command in VERIFY_REBOOT_COMMAND.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.ssh import SETTLED

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP = "example"  # the app role's default app
EXAMPLE_DIR = REPO / "example_app"
HELLO = "Hello World from Flask"
DEFAULT_WORKERS_PER_CORE = 2.0  # gunicorn_conf.py's default, used when the env file does not set it
ANSIBLE_UNREACHABLE = 4  # ansible's exit status when the host could not be reached
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

    def converge(
        self,
        extra_vars: dict[str, Any] | None = None,
        playbook: str = "playbooks/site.yml",
        check: bool = False,
        args: tuple[str, ...] = (),
    ) -> Converge:
        """Run the playbook against the host with these variables (``check``: --check; ``args``: more options)."""
        argv = self.argv(extra_vars, playbook) + (["--check"] if check else []) + list(args)
        result = subprocess.run(
            argv, cwd=REPO, capture_output=True, text=True, check=False, timeout=1800, stdin=subprocess.DEVNULL
        )
        return Converge(result.returncode, result.stdout + result.stderr)

    def hostvars(self) -> dict[str, Any]:
        """The host's variables as the inventory gives them (its address, port, key, lab_url)."""
        argv = [str(BIN / "ansible-inventory"), "-i", self.inventory, "--host", self.host_name]
        return dict(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))

    def argv(self, extra_vars: dict[str, Any] | None = None, playbook: str = "playbooks/site.yml") -> list[str]:
        """The ansible-playbook command line that converges the host (for a test that runs it itself)."""
        variables = dict(extra_vars or {})
        # What the lab's group_vars give every lab host: the controller's extra CAs, so pip in a new venv reaches PyPI
        # through this network's TLS-intercepting proxy. Empty on a machine without extra CAs.
        variables.setdefault("interpreter_ca_certificates", sorted(glob.glob("/usr/local/share/ca-certificates/*.crt")))
        extra = os.environ.get("VERIFY_EXTRA_VARS")
        vars_file = self.tmp / f"vars-{time.monotonic_ns()}.json"
        vars_file.write_text(json.dumps(variables))
        argv = [str(BIN / "ansible-playbook"), "-i", self.inventory, "-l", self.host_name, playbook]
        argv += ["-e", f"@{extra}"] if extra else []
        return [*argv, "-e", f"@{vars_file}"]

    def on_host(self, script: str, timeout: float) -> tuple[int, str] | None:
        """Run a shell script on the host through ``ansible -m raw``; (rc, stdout), or None if it did not answer.

        ansible's task timeout bounds each call, connection included, so a session that hangs (as one did across a lab
        VM's reboot) costs one try, not the test.
        """
        argv = [str(BIN / "ansible"), "-i", self.inventory, self.host_name, "-m", "ansible.builtin.raw", "-a", script]
        argv += ["--task-timeout", str(timeout)]
        # Plain output to parse, even under molecule, which sets ANSIBLE_FORCE_COLOR.
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        result = subprocess.run(
            argv,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout + 60,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode == ANSIBLE_UNREACHABLE:
            return None
        # The ad-hoc output of raw: "HOST | CHANGED | rc=0 >>" (FAILED for rc != 0; rc=-1 on the task timeout), then
        # what the script printed.
        answer = re.search(rf"^{re.escape(self.host_name)} \| \w+ \| rc=(-?\d+) >>\n(.*)", result.stdout, re.M | re.S)
        if answer is None:
            raise AssertionError(
                f"no answer from {self.host_name} in ansible's output:\n{result.stdout}{result.stderr}"
            )
        return None if int(answer[1]) < 0 else (int(answer[1]), answer[2])

    def reboot(self, timeout: float = 900) -> None:
        """Reboot the host and return once its systemd has finished booting again (a new boot id).

        Not ansible.builtin.reboot: its wait has one deadline for the whole wait, not one per connection, and on a lab
        VM one of its SSH sessions hung for minutes after the guest was back. Here the host schedules its own reboot
        (a timer, so the command returns first) and every probe for its return is bounded by on_host.
        """
        command = os.environ.get("VERIFY_REBOOT_COMMAND")
        if command:
            result = subprocess.run(
                shlex.split(command), cwd=REPO, capture_output=True, text=True, check=False, timeout=1200
            )
            assert result.returncode == 0, result.stdout + result.stderr
            return
        read_boot_id = "cat /proc/sys/kernel/random/boot_id"
        before = self.on_host(read_boot_id, timeout=120)
        assert before is not None and before[0] == 0, f"cannot read the boot id of {self.host_name}: {before}"
        scheduled = self.on_host("systemd-run --on-active=2 systemctl reboot", timeout=120)
        assert scheduled is not None and scheduled[0] == 0, f"cannot schedule a reboot of {self.host_name}: {scheduled}"
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            time.sleep(5)
            answer = self.on_host(f"systemctl is-system-running --wait; {read_boot_id}", timeout=180)
            words = answer[1].split() if answer else []
            if len(words) >= 2 and words[-1] != before[1].strip() and words[-2] in SETTLED:
                return
        raise AssertionError(f"{self.host_name} did not come back from its reboot within {timeout} s: {answer}")


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
        # ps exits 1 when it lists nothing: a master that systemd just started (after a kill -9) has no worker yet,
        # or MainPID named a master that is gone by the time ps runs. Both are 0 workers now, not an error.
        listing = self.host.run(f"ps --ppid {pid} -o pid=")
        assert listing.rc in (0, 1), listing.stderr
        return len(listing.stdout.split())

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
