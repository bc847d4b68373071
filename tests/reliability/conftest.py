"""Fixtures of the reliability suite, on top of the verify suite's (the host, the site, the app), and its report.

Run against one host the verify suite can run against (a lab VM or container converged with playbooks/site.yml):

    pytest tests/reliability --connection=ansible --ansible-inventory=INVENTORY --hosts=HOST

The load comes from the controller through the host's forwarded HTTP port (the lab inventory's lab_url), the way a
client sees the service. At the end pytest prints what this area proved: load held, faults survived, inputs rejected.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability.load import Load, Outcome
from tests.verify import conftest as verify
from tests.verify.conftest import APP, EXAMPLE_DIR, REPO, Converge, Site

# The verify suite's fixtures, shared: the site (re-converging the host) and the app under test.
site = verify.site
app = verify.app

RELIABILITY_APP = Path(__file__).resolve().parent / "app"
# The example app as the app list of site.yml's defaults names it, for tests that add entries beside it.
EXAMPLE = {"name": APP, "path": str(EXAMPLE_DIR)}


@dataclass
class Report:
    """What the reliability tests did, for the summary `make test` prints."""

    load: list[tuple[str, int, int]] = field(default_factory=list)
    faults: list[tuple[str, bool, str]] = field(default_factory=list)
    bad_inputs: list[tuple[str, bool]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = ["load held (requests sent, failed):"]
        out += [f"  {name}: {sent} sent, {failed} failed" for name, sent, failed in self.load]
        out.append(f"faults injected: {len(self.faults)}, survived: {sum(ok for _, ok, _ in self.faults)}")
        out += [f"  {name}: {'survived' if ok else 'NOT survived'} ({detail})" for name, ok, detail in self.faults]
        rejected = sum(ok for _, ok in self.bad_inputs)
        out.append(f"bad inputs tried: {len(self.bad_inputs)}, rejected as they must be: {rejected}")
        out += [f"  NOT rejected: {name}" for name, ok in self.bad_inputs if not ok]
        return out


REPORT = Report()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability report after pytest's own summary."""
    if REPORT.load or REPORT.faults or REPORT.bad_inputs:
        terminalreporter.section("reliability report")
        for line in REPORT.lines():
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def report() -> Report:
    return REPORT


@pytest.fixture(scope="session")
def url(site: Site) -> str:
    """The app's URL from the controller: the lab inventory's lab_url (the forwarded HTTP port)."""
    hostvars = site.hostvars()
    assert "lab_url" in hostvars, f"{site.host_name} has no lab_url in {site.inventory}: the load needs one"
    return str(hostvars["lab_url"])


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Make a release directory of the reliability app: release("v2"), or broken with release("v3", main=...)."""

    def make(version: str, main: str | None = None) -> Path:
        directory = tmp_path_factory.mktemp(f"release-{version}") / "app"
        shutil.copytree(RELIABILITY_APP, directory, ignore=shutil.ignore_patterns("__pycache__"))
        (directory / "version.txt").write_text(version + "\n")
        if main is not None:
            (directory / "main.py").write_text(main)
        return directory

    return make


def app_list(path: Path, **env: str) -> dict[str, object]:
    """The extra vars that deploy `path` as the app under test, on port 80, with these env variables."""
    return {"app_list": [{"name": APP, "path": str(path), "env": env}]}


def converge_under_load(
    site: Site, url: str, report: Report, what: str, extra_vars: dict[str, object], playbook: str
) -> tuple[Converge, Outcome]:
    """Run a playbook under continuous load, note it in the report as `what`, and require the run to pass and no
    request to fail. Returns the run's result and the load's outcome for the test's own checks."""
    with Load(url) as load:
        result = site.converge(extra_vars, playbook)
    report.load.append((what, load.outcome.sent, load.outcome.failed))
    assert result.rc == 0, result.output[-3000:]
    assert load.outcome.failed == 0, load.outcome.summary()
    return result, load.outcome


CONTROL_DIR = tempfile.mkdtemp(prefix="ssh-")  # short: a unix socket path has at most 107 bytes


class Watcher:
    """A fast shell on the host (one SSH master connection): the test must act within the seconds between two tasks."""

    def __init__(self, site: Site) -> None:
        hostvars = site.hostvars()
        self.argv = ["ssh", "-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o", f"ControlPath={CONTROL_DIR}/%C"]
        self.argv += ["-o", "ControlPersist=120", "-p", str(hostvars.get("ansible_port", 22))]
        if "ansible_ssh_private_key_file" in hostvars:
            self.argv += ["-i", hostvars["ansible_ssh_private_key_file"]]
        self.argv += hostvars.get("ansible_ssh_common_args", "").split()
        self.argv += [f"{hostvars.get('ansible_user', 'root')}@{hostvars.get('ansible_host', site.host_name)}"]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv, command], capture_output=True, text=True, check=False, timeout=60, stdin=subprocess.DEVNULL
        )

    def kill_run_when(self, argv: list[str], condition: str, timeout: float = 900) -> None:
        """Start ansible-playbook (argv) and SIGKILL it, with its SSH children, once ``condition`` holds on the host.

        What a Ctrl-C or a lost connection does to a run, at a chosen point: between two of its tasks.
        """
        # The run's output goes to a file, not a pipe nobody reads: a run that ends on its own says why.
        with tempfile.TemporaryFile(mode="w+") as output:
            run = subprocess.Popen(
                argv,
                cwd=REPO,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + timeout
                while self.run(condition).returncode != 0:
                    if run.poll() is not None:
                        output.seek(0)
                        tail = output.read()[-4000:]
                        raise AssertionError(
                            f"the run ended (rc {run.returncode}) before this held on the host: {condition}\n{tail}"
                        )
                    assert time.monotonic() < deadline, f"not within {timeout} s: {condition}"
                os.killpg(run.pid, signal.SIGKILL)
            finally:
                run.wait(timeout=60)
