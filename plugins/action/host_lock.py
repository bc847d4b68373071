"""Action plugin: the host lock of a run, with the run's identity taken on the controller.

Two runs of site.yml or deploy.yml against one host at the same time would share the candidate env file, pip into
one venv and flip the app link under each other. The server role's entry point `lock` runs this first thing: it
records who the run is (controller user@host, the ansible-playbook PID and when that process started) in a lock file
on the host, and a second run fails at once with a message naming the holder. The entry point `unlock` frees it at the
end of the run.

A run that failed or was killed leaves its lock behind; it does not block the next run for ever:
- from the same controller, the holder's PID is gone (or is another process since): taken over at once;
- from anywhere, a lock older than `stale_after` seconds is taken over;
- `break_lock` takes it whoever holds it (the operator's explicit choice).
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

MODULE = "wsgiops.meinheld_gunicorn.host_lock"


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None; with the PID it names one run even after PID reuse."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
        return round(boot + ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError, StopIteration):
        pass
    try:  # no /proc (a macOS controller): ps says when the process started, to the second
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=True)
        return time.mktime(time.strptime(out.stdout.strip(), "%a %b %d %H:%M:%S %Y"))
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def run_owner(pid: int | None = None) -> dict[str, Any]:
    """Who this run is: the controller user@host, the ansible-playbook PID (the worker's parent) and its start."""
    pid = os.getppid() if pid is None else pid
    started = process_started(pid)
    return {
        "user": getpass.getuser(),
        "controller": socket.gethostname(),
        "pid": pid,
        "pid_started": started,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)) if started else "unknown",
    }


def token_of(owner: dict[str, Any]) -> str:
    """The run's identity in the lock: the same for every task of one ansible-playbook run, new for the next."""
    return f"{owner['user']}@{owner['controller']}:{owner['pid']}:{owner['pid_started']}"


def holder_gone(holder: dict[str, Any] | None, here: dict[str, Any]) -> bool:
    """True when the holder ran on this controller and its ansible-playbook process no longer exists."""
    owner = (holder or {}).get("owner") or {}
    if owner.get("controller") != here["controller"] or not isinstance(owner.get("pid"), int):
        return False
    started = process_started(owner["pid"])
    if started is None:
        return True
    recorded = owner.get("pid_started")
    return isinstance(recorded, (int, float)) and abs(started - recorded) > 1


def describe(holder: dict[str, Any], age: int | None, path: str, stale_after: int) -> str:
    """The one message a refused run prints: who holds the lock, since when, and how to break it if it is stale."""
    owner = holder.get("owner") or {}
    who = f"{owner.get('user', '?')}@{owner.get('controller', '?')}"
    since = f"since {holder.get('acquired_iso', '?')}" + (f" ({age} s ago)" if age is not None else "")
    return (
        f"another run holds the host lock {path}: {who}, ansible-playbook PID {owner.get('pid', '?')} started "
        f"{owner.get('started', '?')}, {since}. Wait for it to end. If that run is dead, its lock is taken over "
        f"after server_lock_stale_after={stale_after} s, at once by the next run from {owner.get('controller', '?')} "
        "(it sees the PID gone), or now with -e server_lock_break=true"
    )


class ActionModule(ActionBase):
    """Take (state=present) or release (state=absent) the host lock; a lock held by a live run fails the task."""

    _VALID_ARGS = frozenset(("path", "state", "stale_after", "break_lock"))

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call the module with this run's identity; a second call takes over a dead holder of this controller."""
        result = super().run(tmp, task_vars)
        del tmp
        args = self._task.args
        path = args.get("path")
        if not path:
            raise AnsibleActionFail("host_lock: 'path' is required")
        state = args.get("state", "present")
        try:
            stale_after = int(args.get("stale_after", 3600))
        except (TypeError, ValueError):
            raise AnsibleActionFail(f"host_lock: stale_after={args.get('stale_after')!r} is not a number") from None
        here = run_owner()
        module_args = {
            "path": path,
            "state": state,
            "token": token_of(here),
            "owner": here,
            "stale_after": stale_after,
            "break_lock": bool(args.get("break_lock", False)),
        }
        outcome = self._execute_module(module_name=MODULE, module_args=module_args, task_vars=task_vars)
        if outcome.get("failed"):
            return {**result, **outcome}
        if state == "present" and not outcome.get("acquired") and holder_gone(outcome.get("holder"), here):
            gone = outcome["holder"]["token"]
            outcome = self._execute_module(
                module_name=MODULE, module_args={**module_args, "takeover": gone}, task_vars=task_vars
            )
        result.update(outcome)
        result["owner"] = here
        if state == "present" and not outcome.get("failed") and not outcome.get("acquired"):
            result["failed"] = True
            result["msg"] = describe(outcome.get("holder") or {}, outcome.get("age"), path, stale_after)
        return result
