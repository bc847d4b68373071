"""SSH into lab VMs: the options every caller (the lab, Ansible, tests) must agree on."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from lab import progress

# Every VM of an image shares its host keys and ports are reused across VMs, so known_hosts would only ever hold
# stale entries: the lab's VMs are reached on loopback only and are not checked. QEMU's user network keeps the
# host side of a forwarded connection open when the guest reboots, so a connection (Ansible's ControlPersist master)
# would wait forever on a guest that no longer knows it: keep-alives give up on it after 30 s instead.
COMMON_OPTIONS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=6",
)


def command(key: Path, port: int, remote: list[str], connect_timeout: int = 10) -> list[str]:
    """``ssh`` as root to 127.0.0.1:port with the lab key, never prompting.

    ssh joins its arguments with spaces for the remote shell, so each is quoted here: the guest runs exactly the
    argv ``remote`` (pass ``["sh", "-c", "a; b"]`` for shell syntax).
    """
    return [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(port),
        *COMMON_OPTIONS,
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "root@127.0.0.1",
        "--",
        shlex.join(remote),
    ]


def run(key: Path, port: int, remote: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a command in the guest and capture its output (no exception on a non-zero exit)."""
    return subprocess.run(command(key, port, remote), capture_output=True, text=True, timeout=timeout, check=False)


# The answers of `systemctl is-system-running --wait` after which boot is over.
SETTLED = ("running", "degraded")


def system_state(key: Path, port: int, name: str, timeout: float) -> tuple[str, int]:
    """Ask the guest's systemd how far boot got, listing the failed units when it says degraded.

    Returns systemd's answer ('' when none came) and ssh's exit status (255: no connection yet); a guest that does not
    answer within ``timeout`` raises subprocess.TimeoutExpired. VMs and containers wait for boot through this one call.
    """
    res = run(key, port, ["systemctl", "is-system-running", "--wait"], timeout)
    answer = res.stdout.strip().splitlines()[-1] if res.stdout.strip() else ""
    if answer == "degraded":
        failed = run(key, port, ["systemctl", "--failed", "--no-legend", "--plain"])
        progress.step(f"{name}: systemd degraded; failed units:\n{failed.stdout.strip()}")
    return answer, res.returncode
