"""What `make demo` shows at the end: the URL, what it answers, and how many workers run on how many cores.

The worker count comes from the guest's process list (what really runs), not from a config file, so the report
is proof of the runtime sizing rather than a restatement of it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass

from lab import ssh, vm
from lab.paths import Layout

# One line per process: pid, parent pid, systemd unit, command line.
PS_COMMAND = ["ps", "-eo", "pid=,ppid=,unit=,args="]


@dataclass(frozen=True)
class Master:
    """A Gunicorn master process and its workers."""

    pid: int
    unit: str
    workers: int


def gunicorn_masters(ps_output: str) -> list[Master]:
    """Gunicorn masters (a gunicorn process whose parent is not one) with their worker counts, from ``ps`` output."""
    procs: dict[int, tuple[int, str, str]] = {}
    for line in ps_output.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit() and parts[1].isdigit():
            procs[int(parts[0])] = (int(parts[1]), parts[2], parts[3])
    gunicorn = {pid for pid, (_, _, args) in procs.items() if "gunicorn" in args}
    masters = sorted(pid for pid in gunicorn if procs[pid][0] not in gunicorn)
    return [Master(pid, procs[pid][1], sum(1 for p in gunicorn if procs[p][0] == pid)) for pid in masters]


def fetch(url: str, timeout: float = 10) -> str:
    """The body (or the error) of a GET, one line."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return f"{resp.status} {resp.read(200).decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return f"no answer ({exc})"


def show(layout: Layout, name: str) -> int:
    """Print the report; non-zero when the app does not answer or no worker runs."""
    state = vm.load(layout, name)
    if state is None:
        raise RuntimeError(f"no VM named {name}")
    url = f"http://127.0.0.1:{state.http_port}/"
    answer = fetch(url)
    cores = ssh.run(layout.ssh_key, state.ssh_port, ["nproc"]).stdout.strip()
    masters = gunicorn_masters(ssh.run(layout.ssh_key, state.ssh_port, PS_COMMAND).stdout)
    print(f"URL:      {url}")
    print(f"answer:   {answer}")
    print(f"vCPUs:    {cores} (nproc in the VM)")
    for m in masters:
        print(f"gunicorn: {m.unit or 'master'} pid {m.pid}: {m.workers} workers on {cores} cores")
    conf = ssh.run(
        layout.ssh_key,
        state.ssh_port,
        ["sh", "-c", 'for f in /usr/local/lib/*/gunicorn_conf.py; do [ -f "$f" ] && exec python3 "$f"; done'],
    ).stdout.strip()
    if conf:
        try:
            data = json.loads(conf.splitlines()[-1])
            print(
                f"config:   gunicorn_conf.py (default env) -> workers={data.get('workers')} cores={data.get('cores')}"
            )
        except ValueError:
            pass
    return 0 if answer.startswith("200 ") and masters and all(m.workers for m in masters) else 1
