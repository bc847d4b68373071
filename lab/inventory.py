"""Ansible inventories for lab VMs.

The file is YAML for people, written without a YAML library so the lab runs on a bare python3: every scalar is
JSON-quoted, which YAML reads as the same string.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lab import ssh

GROUP = "lab"


@dataclass(frozen=True)
class Host:
    """One VM as Ansible reaches it."""

    name: str
    ssh_port: int
    http_port: int
    dist: str
    cpus: int


def host_vars(host: Host, key: Path) -> dict[str, object]:
    """The connection and lab facts of one host (the contract the roles' tests and molecule rely on)."""
    return {
        "ansible_host": "127.0.0.1",
        "ansible_port": host.ssh_port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": " ".join(ssh.COMMON_OPTIONS),
        # The same choice as StrictHostKeyChecking=no above, said to Ansible itself: Mitogen's connection checks it.
        "ansible_host_key_checking": False,
        # A TCG guest under load can take longer than Ansible's 10 s to start Mitogen's interpreter on first contact.
        "ansible_ssh_timeout": 60,
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_dist": host.dist,
        "lab_cpus": host.cpus,
        "lab_http_port": host.http_port,
        "lab_url": f"http://127.0.0.1:{host.http_port}/",
    }


def render(hosts: list[Host], key: Path) -> str:
    """Inventory text: every host in group ``lab`` (so playbooks on ``all`` or ``lab`` both reach it)."""
    lines = [
        "# Written by `python -m lab`; rewritten on every `up`.",
        "all:",
        "  children:",
        f"    {GROUP}:",
        "      hosts:",
    ]
    if not hosts:
        lines[-1] += " {}"
    for host in sorted(hosts, key=lambda h: h.name):
        lines.append(f"        {host.name}:")
        lines.extend(f"          {k}: {json.dumps(v)}" for k, v in host_vars(host, key).items())
    return "\n".join(lines) + "\n"
