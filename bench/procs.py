"""Start a stack's processes pinned to given CPUs, wait until it answers, read its CPU time and memory, stop it.

Everything is read from /proc, so the harness needs no extra package. Each process gets a session of its own, so a stop
reaches every worker it forked and nothing else.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.stacks import Launch, Proc

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A stack did not come up (it exited, or never answered 200); the message carries its log's tail."""


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def parent_of(pid: int, proc: Path = PROC) -> int | None:
    """The parent PID from /proc/PID/stat (the field after the parenthesised command name), None if gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def children_map(proc: Path = PROC) -> dict[int, list[int]]:
    """Parent PID -> child PIDs for every process on the machine, read once."""
    tree: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name), proc)
            if parent is not None:
                tree.setdefault(parent, []).append(int(entry.name))
    return tree


def descendants(pid: int, tree: dict[int, list[int]]) -> list[int]:
    """Children, grandchildren, ... of pid (not pid itself)."""
    found: list[int] = []
    pending = list(tree.get(pid, []))
    while pending:
        child = pending.pop()
        found.append(child)
        pending.extend(tree.get(child, []))
    return found


def cpu_seconds(pid: int, proc: Path = PROC) -> float:
    """User + system CPU time a live process has used (0 when it is gone)."""
    try:
        fields = (proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


def status_kib(pid: int, key: str, proc: Path = PROC, filename: str = "status") -> int | None:
    """A "Key:  N kB" figure from /proc/PID/status or smaps_rollup; None if the process is gone."""
    try:
        text = (proc / str(pid) / filename).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return None


def busy_jiffies(cpu: int, stat: Path = PROC / "stat") -> tuple[int, int]:
    """(busy, total) jiffies of one CPU since boot, from /proc/stat (idle and iowait count as not busy)."""
    for line in stat.read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + values[4]
            return sum(values[:8]) - idle, sum(values[:8])
    raise ValueError(f"cpu{cpu} not in {stat}")


@dataclass
class Running:
    """A started stack: its processes (Popen) and where their output goes."""

    launch: Launch
    popens: list[tuple[Proc, subprocess.Popen]] = field(default_factory=list)
    log: Path | None = None

    def all_pids(self) -> list[int]:
        """Every process of the stack: what we started and all they forked."""
        tree = children_map()
        pids: list[int] = []
        for _, popen in self.popens:
            pids += [popen.pid, *descendants(popen.pid, tree)]
        return pids

    def worker_pids(self) -> list[int]:
        """The processes that run the app (the RSS per worker figure), as each Proc declares them."""
        tree = children_map()
        pids: list[int] = []
        for proc, popen in self.popens:
            if proc.workers == "self":
                pids.append(popen.pid)
            elif proc.workers == "children":
                pids += tree.get(popen.pid, [])
        return pids

    def cpu_seconds(self) -> float:
        """CPU time the whole stack has used so far (masters, workers, nginx)."""
        return sum(cpu_seconds(pid) for pid in self.all_pids())

    def worker_rss_mib(self) -> float | None:
        """The largest resident set among the app workers, in MiB."""
        sizes = [status_kib(pid, "VmRSS") for pid in self.worker_pids()]
        present = [s for s in sizes if s is not None]
        return max(present) / 1024 if present else None

    def stack_pss_mib(self) -> float | None:
        """Proportional set size of every process of the stack, summed: its memory without double-counting shares."""
        sizes = [status_kib(pid, "Pss", filename="smaps_rollup") for pid in self.all_pids()]
        present = [s for s in sizes if s is not None]
        return sum(present) / 1024 if present else None

    def exited(self) -> list[str]:
        """Names of processes that have died (a crash during a run invalidates it)."""
        return [f"{proc.name} (exit {popen.returncode})" for proc, popen in self.popens if popen.poll() is not None]


def _tail(path: Path | None, lines: int = 15) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _answers(url: str) -> bool:
    """True when a GET of url returns 200 and the expected body."""
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        conn.request("GET", "/" + path)
        response = conn.getresponse()
        return response.status == 200 and response.read() == b"Hello World from Flask"
    except OSError:
        return False
    finally:
        conn.close()


def start(launch: Launch, cpus: str, log: Path, timeout_s: float = 60) -> Running:
    """Write the stack's files, start its processes pinned to `cpus` (taskset), and wait until its URL answers."""
    for path, content in launch.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    running = Running(launch, log=log)
    deadline = time.monotonic() + timeout_s
    with log.open("ab") as sink:
        for proc in launch.procs:
            argv = ["taskset", "-c", cpus, *proc.argv]
            popen = subprocess.Popen(
                argv, env=dict(proc.env), cwd=proc.cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
            running.popens.append((proc, popen))
            _wait(running, lambda: all(f.exists() for f in launch.ready_files), deadline)
    _wait(running, lambda: _answers(launch.url), deadline)
    return running


def _wait(running: Running, ready: Callable[[], bool], deadline: float) -> None:
    while not ready():
        if running.exited() or time.monotonic() > deadline:
            problem = ", ".join(running.exited()) or "no answer in time"
            stop(running)
            raise StartError(f"{running.launch.url}: {problem}\n{_tail(running.log)}")
        time.sleep(0.1)


def stop(running: Running, grace_s: float = 10) -> None:
    """TERM each process's session (the master and every worker), then KILL what is left after grace_s."""
    for _, popen in reversed(running.popens):
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for _, popen in running.popens:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)  # leftovers of the session, even when the leader already exited
        popen.wait()
