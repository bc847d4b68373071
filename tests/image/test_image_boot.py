"""Boot the image `make image` built, twice, from throw-away overlays: 1 vCPU, then 2 (one VM at a time).

No Ansible runs after boot; the only thing handed in is root's SSH key (the systemd credential, as a user would).
What must hold is the image's promise: the service starts enabled, answers through the forwarded port, and sizes its
workers to the instance it boots on (WORKERS_PER_CORE=2: 2 workers on 1 vCPU, 4 on 2), which proves the sizing happens
at boot, not at bake. And each instance is an individual: its own SSH host keys and machine-id.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.image.boot import BuiltImage, Instance, boot

pytestmark = pytest.mark.vm

IMAGE_DIR = Path(os.environ.get("IMAGE_DIR", REPO / ".cache" / "packer" / "debian12"))
APP = "example"
UNIT = f"gunicorn@{APP}.service"
WORKERS_PER_CORE = 2
CPU_COUNTS = (1, 2)

# One SSH round trip that reads everything the tests compare (guest Python is slow under TCG; SSH is not).
FACTS_SCRIPT = f"""
pid=$(systemctl show -p MainPID --value {UNIT})
printf '%s\\n' \\
  "nproc=$(nproc)" \\
  "active=$(systemctl is-active {UNIT})" \\
  "enabled=$(systemctl is-enabled {UNIT})" \\
  "workers=$(pgrep -c -P "$pid")" \\
  "machine_id=$(cat /etc/machine-id)" \\
  "host_keys=$(cat /etc/ssh/ssh_host_*_key.pub | awk '{{print $2}}' | sort | tr '\\n' ' ')" \\
  "journal_dirs=$(ls /var/log/journal 2>/dev/null | tr '\\n' ' ')" \\
  "keygen=$(systemctl is-active ssh-host-keys.service)" \\
  "sshd_passwords=$(sshd -T | awk '$1 == "passwordauthentication" {{print $2}}')" \\
  "password_users=$(awk -F: '$2 !~ /^[!*]/ {{print $1}}' /etc/shadow | tr '\\n' ' ')" \\
  "failed=$(systemctl --failed --no-legend --plain | awk '{{print $1}}' | tr '\\n' ' ')"
"""


def read_facts(vm: Instance) -> dict[str, str]:
    res = vm.run(FACTS_SCRIPT)
    assert res.returncode == 0, res.stderr
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


def wait_for_workers(vm: Instance, expected: int, timeout: float = 120) -> dict[str, str]:
    """Gunicorn forks its workers after READY; under TCG the last may take seconds more than the boot."""
    deadline = time.monotonic() + timeout
    facts = read_facts(vm)
    while facts.get("workers") != str(expected) and time.monotonic() < deadline:
        time.sleep(3)
        facts = read_facts(vm)
    return facts


def get(url: str, timeout: float = 30) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def first_answer(vm: Instance, timeout: float = 180) -> tuple[int, str]:
    """GET / until it answers 200 (the unit may still be starting when systemd reports the boot done) or time runs out.

    The last answer is returned either way, an error as status 0 with its text, so a failing test shows why.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = get(f"http://127.0.0.1:{vm.http_port}/")
        except OSError as exc:
            answer = (0, f"{type(exc).__name__}: {exc}")
        if answer[0] == 200 or time.monotonic() > deadline:
            return answer
        time.sleep(2)


@pytest.fixture(scope="module")
def image() -> BuiltImage:
    if not (IMAGE_DIR / "build.json").exists():
        pytest.fail(f"no built image in {IMAGE_DIR}: run `make image` first (make test-image does)")
    return BuiltImage.in_dir(IMAGE_DIR)


@pytest.fixture(scope="module")
def instances(image: BuiltImage) -> dict[int, dict[str, object]]:
    """Boot the image once per vCPU count, one VM at a time, and record what each instance showed."""
    seen: dict[int, dict[str, object]] = {}
    for cpus in CPU_COUNTS:
        with boot(image, cpus) as vm:
            http = first_answer(vm)
            http_seconds = time.monotonic() - vm.launched_at
            facts = wait_for_workers(vm, cpus * WORKERS_PER_CORE)
            seen[cpus] = {"facts": facts, "http": http, "boot_seconds": vm.boot_seconds, "serial": vm.serial()}
            print(
                f"{cpus} vCPU: systemd up {vm.boot_seconds:.0f} s, HTTP {http[0]} {http_seconds:.0f} s after power-on; "
                f"{json.dumps(facts)}"
            )
    return seen


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_guest_has_the_vcpus_it_was_given(instances: dict, cpus: int) -> None:
    assert instances[cpus]["facts"]["nproc"] == str(cpus)


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_service_is_enabled_and_active_after_boot(instances: dict, cpus: int) -> None:
    facts = instances[cpus]["facts"]
    assert (facts["enabled"], facts["active"]) == ("enabled", "active"), instances[cpus]["serial"]


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_app_answers_through_the_forwarded_port(instances: dict, cpus: int) -> None:
    status, body = instances[cpus]["http"]
    assert status == 200, body
    assert "Hello World from Flask" in body


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_workers_are_sized_to_this_instance(instances: dict, cpus: int) -> None:
    assert instances[cpus]["facts"]["workers"] == str(cpus * WORKERS_PER_CORE)


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_boot_is_clean(instances: dict, cpus: int) -> None:
    facts = instances[cpus]["facts"]
    assert facts["failed"].split() == []
    assert facts["keygen"] == "active"
    # The build's journal was dropped: only this instance's machine-id has a journal directory.
    assert facts["journal_dirs"].split() in ([], [facts["machine_id"]])


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_no_password_logins(instances: dict, cpus: int) -> None:
    """sshd refuses passwords and no account has a usable (or empty) password: keys handed in at boot only."""
    facts = instances[cpus]["facts"]
    assert facts["sshd_passwords"] == "no"
    assert facts["password_users"].split() == []


def test_instances_have_their_own_machine_ids(instances: dict) -> None:
    ids = [instances[c]["facts"]["machine_id"] for c in CPU_COUNTS]
    assert all(len(i) == 32 for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_instances_have_their_own_ssh_host_keys(instances: dict) -> None:
    keys = [set(instances[c]["facts"]["host_keys"].split()) for c in CPU_COUNTS]
    assert all(keys), keys
    assert not keys[0] & keys[1]
