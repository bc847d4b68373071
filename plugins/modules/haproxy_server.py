#!/usr/bin/python
"""Ansible module: put one HAProxy server in rotation, drain it or put it in maintenance via the runtime API."""

from __future__ import annotations

import csv
import io
import socket
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: haproxy_server
short_description: Drain, disable or put back one HAProxy server through the runtime API (admin socket)
description:
  - Talks to HAProxy's admin socket (C(stats socket ... level admin)); no reload, no config change, no socat.
  - I(state=drain) stops new requests to the server (health checks go on) and, with I(wait), returns once the server
    has no session left, so a rolling deploy touches a host only after its in-flight requests finished.
  - I(state=ready) puts it back and, with I(wait), returns once HAProxy's own health check sees it up, so the next
    host of a rolling deploy is drained only when this one serves again.
  - Changed only when the server's administrative state changed; check mode says what it would do.
options:
  socket:
    description: Path of the admin socket on the balancer.
    type: path
    default: /run/haproxy/admin.sock
  backend:
    description: The backend (proxy) holding the server.
    type: str
    required: true
  server:
    description: The server's name in that backend.
    type: str
    required: true
  state:
    description: ready (in rotation), drain (no new requests), maint (no requests, no health checks).
    type: str
    choices: [ready, drain, maint]
    required: true
  wait:
    description: Wait for the state to take effect (no sessions left for drain/maint; up by health check for ready).
    type: bool
    default: true
  timeout:
    description: Seconds to wait before failing.
    type: int
    default: 120
author: gunicorn-suite
"""

RETURN = r"""
admin_state:
  description: The server's administrative state after the call (ready, drain or maint).
  type: str
  returned: always
operational_state:
  description: HAProxy's health-check view after the call (up, down, starting, stopping).
  type: str
  returned: always
sessions:
  description: The server's current sessions (scur) when the module returned.
  type: int
  returned: always
waited:
  description: Seconds spent waiting.
  type: float
  returned: always
"""

# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited, config, resolution and hostname maintenance; forced
# and inherited drain.
MAINT_BITS = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
DRAIN_BITS = 0x08 | 0x10
FORCED_MAINT = 0x01
FORCED_DRAIN = 0x08
# srv_op_state values (SRV_ST_*).
OPERATIONAL = {0: "down", 1: "starting", 2: "up", 3: "stopping"}


class RuntimeApiError(RuntimeError):
    """HAProxy answered with an error, or the server is not in the backend."""


def parse_servers_state(text: str, backend: str, server: str) -> dict[str, int]:
    """Admin and operational state of one server from ``show servers state BACKEND``.

    The answer is a version line, a ``# be_id be_name srv_id srv_name ...`` header and one line per server; fields
    are found by header name, so a HAProxy that adds columns still parses.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        raise RuntimeApiError(f"unexpected answer to 'show servers state {backend}': {text.strip()[:200]}")
    names = header[2:].split()
    for line in lines:
        if line.startswith("#") or (line[0].isdigit() and " " not in line.strip()):
            continue
        row = dict(zip(names, line.split(), strict=False))
        if row.get("be_name") == backend and row.get("srv_name") == server:
            return {"admin": int(row["srv_admin_state"]), "op": int(row["srv_op_state"])}
    raise RuntimeApiError(f"no server {server!r} in backend {backend!r}")


def sessions(stat_csv: str, backend: str, server: str) -> int:
    """The server's current sessions (``scur``) from ``show stat`` (CSV with a ``# pxname,svname,...`` header)."""
    rows = csv.DictReader(io.StringIO(stat_csv.lstrip("# ")))
    for row in rows:
        if row.get("pxname") == backend and row.get("svname") == server:
            return int(row.get("scur") or 0)
    raise RuntimeApiError(f"no server {server!r} in backend {backend!r} in 'show stat'")


def admin_name(admin: int) -> str:
    """ready, drain or maint for an srv_admin_state bit field (maintenance wins over drain, as in HAProxy)."""
    if admin & MAINT_BITS:
        return "maint"
    if admin & DRAIN_BITS:
        return "drain"
    return "ready"


def command_for(admin: int, desired: str, backend: str, server: str) -> str | None:
    """The runtime API command moving the server to ``desired``, or None when it is there already.

    Only the forced bits are the operator's to change: a server drained because its weight is 0 in the config
    (inherited drain) is already out of rotation, and `state ready` does not lift that.
    """
    current = admin_name(admin)
    if desired == current:
        return None
    if desired == "ready" and not admin & (FORCED_MAINT | FORCED_DRAIN):
        return None
    return f"set server {backend}/{server} state {desired}"


def done_waiting(desired: str, op: int, scur: int) -> bool:
    """Whether the wait is over: drained servers have no session left; ready ones are up by health check."""
    if desired == "ready":
        return op == 2
    return scur == 0


def ask(path: str, command: str, timeout: float = 10.0) -> str:
    """Send one command to the admin socket and return HAProxy's whole answer (it closes after each command)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(path)
        client.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def main() -> None:
    """Read the server's state, change it when it differs, wait for it to take effect."""
    module = AnsibleModule(
        argument_spec={
            "socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
            "backend": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": ["ready", "drain", "maint"]},
            "wait": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 120},
        },
        supports_check_mode=True,
    )
    path, backend, server, desired = (module.params[k] for k in ("socket", "backend", "server", "state"))

    def state() -> dict[str, int]:
        found = parse_servers_state(ask(path, f"show servers state {backend}"), backend, server)
        found["scur"] = sessions(ask(path, "show stat"), backend, server)
        return found

    try:
        before = state()
        command = command_for(before["admin"], desired, backend, server)
        if command and not module.check_mode:
            answer = ask(path, command).strip()
            if answer:
                raise RuntimeApiError(f"{command}: {answer}")
        started = time.monotonic()
        after = state() if not module.check_mode else before
        while module.params["wait"] and not module.check_mode and not done_waiting(desired, after["op"], after["scur"]):
            if time.monotonic() - started > module.params["timeout"]:
                module.fail_json(
                    msg=f"{backend}/{server} not {desired} after {module.params['timeout']}s: "
                    f"{OPERATIONAL.get(after['op'], after['op'])}, {after['scur']} sessions",
                    admin_state=admin_name(after["admin"]),
                    operational_state=OPERATIONAL.get(after["op"], str(after["op"])),
                    sessions=after["scur"],
                )
            time.sleep(0.5)
            after = state()
    except (OSError, RuntimeApiError, KeyError, ValueError) as error:
        module.fail_json(msg=f"HAProxy runtime API at {path}: {error}")
    module.exit_json(
        changed=command is not None,
        admin_state=desired if module.check_mode and command else admin_name(after["admin"]),
        operational_state=OPERATIONAL.get(after["op"], str(after["op"])),
        sessions=after["scur"],
        waited=round(time.monotonic() - started, 1),
        command=command,
    )


if __name__ == "__main__":
    main()
