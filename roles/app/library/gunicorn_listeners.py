#!/usr/bin/python
"""Ansible module: list the TCP ports in LISTEN state on the host and the systemd units that hold them (read-only)."""

from __future__ import annotations

import os
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: gunicorn_listeners
short_description: List listening TCP ports and the systemd units holding them
description:
  - Reads /proc/net/tcp and /proc/net/tcp6, maps each listening socket to its processes and their systemd unit.
  - Changes nothing; the app role uses it to refuse a port another service already holds.
options: {}
author: gunicorn-suite
"""

RETURN = r"""
listeners:
  description: One entry per listening port, with the units (or process names) holding it.
  type: list
  elements: dict
  returned: always
"""

UNIT_RE = re.compile(r"/([^/]+\.(?:service|scope))(?:/|$)")


def _listening_inodes() -> dict[str, int]:
    """Map socket inode -> port for every TCP socket in LISTEN state (state 0A)."""
    inodes = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A":
                        inodes[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
        except OSError:
            continue
    return inodes


def _owner(pid: str) -> str:
    """The systemd unit of a process, else its command name."""
    try:
        with open(f"/proc/{pid}/cgroup") as handle:
            for line in handle:
                found = UNIT_RE.findall(line.strip().split(":", 2)[-1])
                if found:
                    return found[-1]
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return "process " + handle.read().strip()
    except OSError:
        return "an unknown process"


def listeners() -> list[dict[str, object]]:
    """Return [{port, units}] sorted by port."""
    inodes = _listening_inodes()
    owners: dict[int, set[str]] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                owners.setdefault(inodes[target[8:-1]], set()).add(_owner(pid))
    for port in set(inodes.values()):
        owners.setdefault(port, {"an unknown process"})
    return [{"port": port, "units": sorted(units)} for port, units in sorted(owners.items())]


def main() -> None:
    """Run the module."""
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.exit_json(changed=False, listeners=listeners())


if __name__ == "__main__":
    main()
