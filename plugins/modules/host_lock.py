#!/usr/bin/python
"""Ansible module: take or release the host lock of a run (one run of the suite's playbooks at a time per host).

The action plugin of the same name (plugins/action/host_lock.py) computes who the run is on the controller and
calls this module on the host, once, or twice when the holder it found is a dead run of the same controller.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: host_lock
short_description: Take or release the host lock that keeps two runs of the suite apart
description:
  - The lock is a JSON record in O(path) (root-only, under /run, so a reboot frees it), read and written under
    flock(2), so two runs deciding at the same time see each other.
  - C(state=present) takes a free lock, keeps the run's own, and takes over a lock when O(break_lock) is true, when
    its holder is older than O(stale_after) seconds (host clock), or when O(takeover) names the holder (a dead run,
    as the controller found). Otherwise it changes nothing and returns the holder with RV(acquired=false).
  - C(state=absent) frees the lock when the run holds it; another run's lock is left as it is.
  - Run through the action plugin of the same name, which fills O(owner) and O(token) and fails with the holder.
options:
  path:
    description: The lock file on the host.
    type: path
    required: true
  state:
    description: Take (present) or release (absent) the lock.
    type: str
    choices: [present, absent]
    default: present
  token:
    description: The run's identity; a lock with this token is the run's own.
    type: str
    required: true
  owner:
    description: Who the run is (user, controller, pid, started), recorded in the lock for the next run's message.
    type: dict
    default: {}
  stale_after:
    description: Seconds after which a lock counts as left behind and is taken over.
    type: int
    default: 3600
  break_lock:
    description: Take the lock whoever holds it.
    type: bool
    default: false
  takeover:
    description: Token of a holder the controller found dead; its lock is taken over (only if still that holder's).
    type: str
    default: ""
author: gunicorn-suite
"""

RETURN = r"""
acquired:
  description: Whether the run holds the lock now (state=present).
  type: bool
  returned: always
holder:
  description: The lock's record before this call (token, owner, acquired, acquired_iso), or null when free.
  type: dict
  returned: always
age:
  description: Seconds since the holder took the lock (host clock), or null.
  type: int
  returned: always
reason:
  description: Why the lock was taken (free, own, broken, stale, holder gone), or why not (held).
  type: str
  returned: always
"""


def _open(path: str) -> int:
    """Open (or create, root-only) the lock file without following a symlink planted in its place."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.open(path, flags, 0o600)


def _read(fd: int) -> dict | None:
    """The current record, or None when the lock is free (empty or unreadable content counts as free)."""
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        record = json.loads(data.decode("utf-8")) if data.strip() else None
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("token") else None


def _write(fd: int, record: dict | None) -> None:
    """Replace the content in place (the inode stays: another run may hold it open, waiting on flock)."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if record is not None:
        os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
    os.fsync(fd)


def decide(holder: dict | None, params: dict, now: float) -> tuple[bool, str]:
    """(take the lock?, reason) for state=present: pure, so the unit tests hold every case."""
    if holder is None:
        return True, "free"
    if holder.get("token") == params["token"]:
        return True, "own"
    if params["break_lock"]:
        return True, "broken"
    if params["takeover"] and params["takeover"] == holder.get("token"):
        return True, "holder gone"
    acquired = holder.get("acquired")
    if not isinstance(acquired, (int, float)) or now - acquired > params["stale_after"]:
        return True, "stale"
    return False, "held"


def main() -> None:
    """Take or release the lock under flock(2); the holder (before this call) is always returned."""
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "token": {"type": "str", "required": True},
            "owner": {"type": "dict", "default": {}},
            "stale_after": {"type": "int", "default": 3600},
            "break_lock": {"type": "bool", "default": False},
            "takeover": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["stale_after"] < 1:
        module.fail_json(msg=f"stale_after={params['stale_after']} is invalid: expected a number of seconds >= 1")
    try:
        fd = _open(params["path"])
    except OSError as exc:
        hint = " (a symlink there is refused)" if exc.errno == errno.ELOOP else ""
        module.fail_json(msg=f"cannot open the host lock {params['path']}: {exc.strerror}{hint}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        holder = _read(fd)
        now = time.time()
        age = int(now - holder["acquired"]) if holder and isinstance(holder.get("acquired"), (int, float)) else None
        result = {"holder": holder, "age": age, "changed": False}
        if params["state"] == "absent":
            ours = holder is not None and holder.get("token") == params["token"]
            if ours and not module.check_mode:
                _write(fd, None)
            module.exit_json(acquired=False, reason="released" if ours else "not ours", **{**result, "changed": ours})
        take, reason = decide(holder, params, now)
        if take and reason != "own" and not module.check_mode:
            _write(
                fd,
                {
                    "token": params["token"],
                    "owner": params["owner"],
                    "acquired": now,
                    "acquired_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(now)),
                },
            )
        module.exit_json(acquired=take, reason=reason, **{**result, "changed": take and reason != "own"})
    finally:
        os.close(fd)


if __name__ == "__main__":
    main()
