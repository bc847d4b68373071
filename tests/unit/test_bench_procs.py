"""bench/procs.py: the process tree, CPU time, memory and CPU load read from a /proc laid out in a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import procs


def fake_proc(root: Path, pid: int, ppid: int, utime: int = 0, stime: int = 0, comm: str = "py (x) y") -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    # Fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    rest = ["S", str(ppid), "1", "1", "0", "-1", "0", "0", "0", "0", "0", str(utime), str(stime), "0", "0"]
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(rest)}\n")
    (d / "status").write_text(f"Name:\tpy\nVmRSS:\t  {pid * 1024} kB\nThreads:\t1\n")


@pytest.fixture
def proc(tmp_path: Path) -> Path:
    fake_proc(tmp_path, 10, 1, utime=100, stime=50)
    fake_proc(tmp_path, 11, 10, utime=7, stime=3)
    fake_proc(tmp_path, 12, 10)
    fake_proc(tmp_path, 13, 12)
    fake_proc(tmp_path, 20, 1)
    (tmp_path / "self").mkdir()
    return tmp_path


def test_parent_survives_parentheses_in_the_command_name(proc: Path) -> None:
    assert procs.parent_of(10, proc) == 1
    assert procs.parent_of(99, proc) is None


def test_descendants_walk_the_whole_tree_and_nothing_else(proc: Path) -> None:
    tree = procs.children_map(proc)
    assert sorted(procs.descendants(10, tree)) == [11, 12, 13]
    assert procs.descendants(20, tree) == []


def test_cpu_seconds_adds_user_and_system_ticks(proc: Path) -> None:
    assert procs.cpu_seconds(10, proc) == pytest.approx(150 / procs.CLOCK_TICKS)
    assert procs.cpu_seconds(99, proc) == 0.0


def test_status_kib(proc: Path) -> None:
    assert procs.status_kib(11, "VmRSS", proc) == 11 * 1024
    assert procs.status_kib(11, "VmSwap", proc) is None
    assert procs.status_kib(99, "VmRSS", proc) is None


def test_busy_jiffies_counts_idle_and_iowait_as_not_busy(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 10 0 5 80 5 0 0 0 0 0\ncpu1 1 2 3 4 5 6 7 8 0 0\n")
    assert procs.busy_jiffies(0, stat) == (15, 100)
    assert procs.busy_jiffies(1, stat) == (27, 36)
    with pytest.raises(ValueError, match="cpu2"):
        procs.busy_jiffies(2, stat)


def test_free_port_is_bindable() -> None:
    import socket

    port = procs.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
