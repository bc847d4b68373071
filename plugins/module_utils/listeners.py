"""The TCP ports in LISTEN state on the host and the systemd units (or processes) holding them, from /proc.

Shared by the gunicorn_listeners and app_host_facts modules: the app role refuses a port another service holds.
"""

from __future__ import annotations

import os
import re

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


def socket_units(list_sockets: str) -> dict[int, set[str]]:
    """Map port -> socket units from `systemctl list-sockets --all --full --no-legend --plain` (LISTEN UNIT ACTIVATES).

    A socket systemd itself holds belongs to PID 1 (init.scope); the socket unit is its real owner.
    """
    units: dict[int, set[str]] = {}
    for line in list_sockets.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].endswith(".socket"):
            _, sep, port = fields[0].rpartition(":")
            if sep and port.isdigit():
                units.setdefault(int(port), set()).add(fields[1])
    return units


def listeners(list_sockets: str = "") -> list[dict[str, object]]:
    """Return [{port, units}] sorted by port."""
    inodes = _listening_inodes()
    held_by_systemd = socket_units(list_sockets)
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
                port = inodes[target[8:-1]]
                owned = held_by_systemd.get(port) if pid == "1" else None
                owners.setdefault(port, set()).update(owned or {_owner(pid)})
    for port in set(inodes.values()):
        owners.setdefault(port, {"an unknown process"})
    return [{"port": port, "units": sorted(units)} for port, units in sorted(owners.items())]
