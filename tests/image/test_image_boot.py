"""Boot the image `make image` built, twice, from throw-away overlays: 1 vCPU, then 2 (one VM at a time), each with
its own NoCloud seed (cloud-init user-data), as one AMI is launched in two environments.

No Ansible runs after boot; what is handed in is root's SSH key (the systemd credential) and the user-data. What must
hold is the image's promise: the service starts enabled, answers through the forwarded port, runs with the settings
and the secret its seed wrote into /etc/gunicorn/example.env.d/ (WORKERS_PER_CORE=1 on 1 vCPU: 1 worker;
WORKERS_PER_CORE=1.5 on 2 vCPUs: 3), which proves both the sizing at boot and the settings at boot, and keeps the
secret out of `systemctl show` and away from other users. The image file itself is unchanged. And each instance is an
individual: its own SSH host keys and machine-id. And it keeps nothing of the build machine's trust: the lab's CA
certificates and pip config, which the build used to reach PyPI, are gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
import urllib.request
from pathlib import Path

import pytest

from lab import image as lab_image
from tests.conftest import REPO
from tests.image.boot import BuiltImage, Instance, boot

pytestmark = pytest.mark.vm

IMAGE_DIR = Path(os.environ.get("IMAGE_DIR", REPO / ".cache" / "packer" / "debian12"))
APP = "example"
UNIT = f"gunicorn@{APP}.service"
CPU_COUNTS = (1, 2)
# Per boot: the environment's settings and secret, as an operator writes them in user-data.
SEEDS = {
    1: {"WORKERS_PER_CORE": "1", "DEPLOY_ENV": "staging", "API_SECRET": "staging-secret-7c41"},
    2: {"WORKERS_PER_CORE": "1.5", "DEPLOY_ENV": "production", "API_SECRET": "production-secret-e09b"},
}


def user_data(settings: dict[str, str]) -> str:
    """The cloud-config of packer/README.md: settings in one drop-in, the secret in another, both 0640 root:APP."""
    plain = "".join(f'      {k}="{v}"\n' for k, v in settings.items() if k != "API_SECRET")
    return (
        "#cloud-config\n"
        "write_files:\n"
        f"  - path: /etc/gunicorn/{APP}.env.d/10-settings.env\n"
        f"    owner: root:{APP}\n"
        "    permissions: '0640'\n"
        "    content: |\n"
        f"{plain}"
        f"  - path: /etc/gunicorn/{APP}.env.d/20-secrets.env\n"
        f"    owner: root:{APP}\n"
        "    permissions: '0640'\n"
        "    content: |\n"
        f'      API_SECRET="{settings["API_SECRET"]}"\n'
    )


def expected_workers(cpus: int) -> int:
    return max(1, int(cpus * float(SEEDS[cpus]["WORKERS_PER_CORE"])))


def ca_markers() -> list[str]:
    """One base64 line from the middle of each of this machine's extra CA certificates (what the lab's base image
    trusts): found in the guest's bundle, it would mean the image still trusts a CA of the machine that built it."""
    markers = []
    for cert in lab_image.ca_certificates():
        body = [line for line in cert.read_text().splitlines() if line.strip() and not line.startswith("-----")]
        if len(body) > 2:
            markers.append(body[len(body) // 2])
    return markers or ["no extra CA on this machine"]


CA_GREP = " ".join(f"-e {shlex.quote(marker)}" for marker in ca_markers())

# One SSH round trip that reads everything the tests compare (guest Python is slow under TCG; SSH is not).
FACTS_SCRIPT = f"""
pid=$(systemctl show -p MainPID --value {UNIT})
secrets=/etc/gunicorn/{APP}.env.d/20-secrets.env
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
  "failed=$(systemctl --failed --no-legend --plain | awk '{{print $1}}' | tr '\\n' ' ')" \\
  "deploy_env=$(tr '\\0' '\\n' < /proc/$pid/environ | sed -n 's/^DEPLOY_ENV=//p')" \\
  "secret=$(tr '\\0' '\\n' < /proc/$pid/environ | sed -n 's/^API_SECRET=//p')" \\
  "secret_in_show=$(systemctl show {UNIT} | grep -c SECRET)" \\
  "secret_file=$(stat -c '%U:%G %a' "$secrets")" \\
  "nobody_reads=$(runuser -u nobody -- cat "$secrets" >/dev/null 2>&1 && echo yes || echo no)" \\
  "cloud_init=$(cloud-init status 2>/dev/null | awk '{{print $2}}')" \\
  "lab_trust=$(ls -d /usr/local/share/ca-certificates/lab /etc/pip.conf 2>/dev/null | tr '\\n' ' ')" \\
  "lab_ca_in_bundle=$(grep -c -F {CA_GREP} /etc/ssl/certs/ca-certificates.crt)"
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


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def instances(image: BuiltImage) -> dict[int, dict[str, object]]:
    """Boot the image once per vCPU count with its seed, one VM at a time, and record what each instance showed."""
    seen: dict[int, dict[str, object]] = {}
    before = digest(image.disk)
    for cpus in CPU_COUNTS:
        with boot(image, cpus, user_data=user_data(SEEDS[cpus])) as vm:
            http = first_answer(vm)
            http_seconds = time.monotonic() - vm.launched_at
            facts = wait_for_workers(vm, expected_workers(cpus))
            seen[cpus] = {"facts": facts, "http": http, "boot_seconds": vm.boot_seconds, "serial": vm.serial()}
            shown = {k: v for k, v in facts.items() if k != "secret"}
            print(
                f"{cpus} vCPU with seed {SEEDS[cpus]['DEPLOY_ENV']}: systemd up {vm.boot_seconds:.0f} s, "
                f"first HTTP {http[0]} {http_seconds:.0f} s after power-on; {json.dumps(shown)}"
            )
    seen[0] = {"image_unchanged": digest(image.disk) == before}
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
def test_workers_are_sized_to_this_instance_and_its_seed(instances: dict, cpus: int) -> None:
    assert instances[cpus]["facts"]["workers"] == str(expected_workers(cpus))


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_each_boot_runs_with_its_own_seeds_settings(instances: dict, cpus: int) -> None:
    facts = instances[cpus]["facts"]
    assert facts["cloud_init"] == "done", instances[cpus]["serial"]
    assert facts["deploy_env"] == SEEDS[cpus]["DEPLOY_ENV"]


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_the_secret_reaches_the_app_and_nobody_else(instances: dict, cpus: int) -> None:
    facts = instances[cpus]["facts"]
    assert facts["secret"] == SEEDS[cpus]["API_SECRET"]
    assert facts["secret_in_show"] == "0"
    assert (facts["secret_file"], facts["nobody_reads"]) == (f"root:{APP} 640", "no")


def test_the_image_is_unchanged_by_its_boots(instances: dict) -> None:
    assert instances[0]["image_unchanged"]


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


@pytest.mark.parametrize("cpus", CPU_COUNTS)
def test_the_image_keeps_none_of_the_build_machines_trust(instances: dict, cpus: int) -> None:
    """The lab's CA certificates, the bundle entries made from them and /etc/pip.conf: used by the build, not kept."""
    facts = instances[cpus]["facts"]
    assert facts["lab_trust"].split() == []
    assert facts["lab_ca_in_bundle"] == "0"
