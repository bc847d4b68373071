"""The host lock on a real host (a Debian 12 systemd container, lab/container.py): two runs against one host.

A run holding the lock (parked on a task until the test lets it go) makes a second run fail fast with the holder
named; a run killed with the lock is taken over by the next run from this controller (its PID is gone); a lock of
another controller is refused while fresh, taken over once stale, and broken on request. Each case is one short
ansible-playbook run of the server role's entry points `lock` and `unlock`, not a converge: about two minutes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "hostlock"
LOCK = "/run/wsgiops-meinheld-gunicorn.lock"
PLAYBOOK = """
- name: A run that takes the host lock, parks until the test lets it go, and releases the lock
  hosts: {name}
  gather_facts: false
  become: true
  tasks:
    - name: Take the host lock
      ansible.builtin.include_role:
        name: wsgiops.meinheld_gunicorn.server
        tasks_from: lock
    - name: Tell the test the lock is taken
      ansible.builtin.file:
        path: "{{{{ signal_dir }}}}/locked"
        state: touch
        mode: "0644"
      delegate_to: localhost
      become: false
    - name: Park until the test lets this run go
      ansible.builtin.wait_for:
        path: "{{{{ signal_dir }}}}/go"
        timeout: 300
      delegate_to: localhost
      become: false
      when: park | bool
    - name: Release the host lock
      ansible.builtin.include_role:
        name: wsgiops.meinheld_gunicorn.server
        tasks_from: unlock
"""


@pytest.fixture(scope="module")
def inventory() -> Iterator[str]:
    container = [str(BIN / "python"), "-m", "lab.container"]
    subprocess.run([*container, "build"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    up = subprocess.run([*container, "up", NAME], cwd=REPO, check=True, capture_output=True, text=True)
    try:
        yield json.loads(up.stdout.strip().splitlines()[-1])["inventory"]
    finally:
        subprocess.run([*container, "down", NAME], cwd=REPO, check=False)


def _argv(inventory: str, playbook: Path, signal_dir: Path, park: bool, *extra: str) -> list[str]:
    return [
        str(BIN / "ansible-playbook"), "-v", "-i", inventory, str(playbook),
        "-e", f"signal_dir={signal_dir}", "-e", f"park={park}", *extra,
    ]  # fmt: skip


def _start(inventory: str, tmp: Path, tag: str) -> tuple[subprocess.Popen[str], Path]:
    """A run that takes the lock and parks; returns once it holds the lock."""
    signal_dir = tmp / tag
    signal_dir.mkdir()
    playbook = tmp / "lock.yml"
    run = subprocess.Popen(
        _argv(inventory, playbook, signal_dir, True), cwd=REPO, text=True, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (signal_dir / "locked").exists():
        assert run.poll() is None, f"the first run ended before it held the lock:\n{run.communicate()[0]}"
        assert time.monotonic() < deadline, "the first run did not take the lock in 180 s"
        time.sleep(0.5)
    return run, signal_dir


def _run(inventory: str, tmp: Path, *extra: str) -> tuple[int, str, float]:
    signal_dir = tmp / f"quick-{time.monotonic_ns()}"
    signal_dir.mkdir()
    started = time.monotonic()
    done = subprocess.run(
        _argv(inventory, tmp / "lock.yml", signal_dir, False, *extra), cwd=REPO, capture_output=True, text=True,
        timeout=300, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, time.monotonic() - started


def _on_host(inventory: str, script: str) -> str:
    done = subprocess.run(
        [str(BIN / "ansible"), NAME, "-i", inventory, "-m", "ansible.builtin.raw", "-a", script],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "lock.yml").write_text(PLAYBOOK.format(name=NAME))
    return tmp_path


def test_a_second_run_fails_fast_naming_the_holder(inventory: str, tmp: Path) -> None:
    first, signal_dir = _start(inventory, tmp, "first")
    try:
        rc, out, seconds = _run(inventory, tmp)
        assert rc != 0, out
        assert "another run holds the host lock /run/wsgiops-meinheld-gunicorn.lock" in out, out
        assert f"ansible-playbook PID {first.pid} started" in out, out
        assert "server_lock_break=true" in out and "server_lock_stale_after=3600" in out, out
        assert "Park until" not in out, "the refused run went on past the lock"
        assert seconds < 90, f"the refused run took {seconds:.0f} s"
    finally:
        (signal_dir / "go").touch()
    out = first.communicate(timeout=180)[0]
    assert first.returncode == 0, out
    assert _on_host(inventory, f"wc -c < {LOCK}").split()[-1] == "0", "the lock was not released"
    rc, out, _ = _run(inventory, tmp)
    assert rc == 0, out
    assert "reason: free" in out, out


def test_a_killed_run_does_not_block_the_next_run_from_its_controller(inventory: str, tmp: Path) -> None:
    first, _ = _start(inventory, tmp, "killed")
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    assert f'"pid": {first.pid}' in _on_host(inventory, f"cat {LOCK}"), "the killed run's lock is not there"
    rc, out, _ = _run(inventory, tmp)
    assert rc == 0, out
    assert "reason: holder gone" in out, out


def _foreign_lock(inventory: str, age: int) -> None:
    record = {
        "token": "ops@elsewhere:4242:1.0",
        "owner": {"user": "ops", "controller": "elsewhere", "pid": 4242, "pid_started": 1.0, "started": "then"},
        "acquired": time.time() - age,
        "acquired_iso": "2026-01-01T00:00:00+0000",
    }
    _on_host(inventory, f"printf '%s' '{json.dumps(record)}' > {LOCK}")


def test_a_lock_of_another_controller_is_refused_fresh_taken_stale_and_broken_on_request(
    inventory: str, tmp: Path
) -> None:
    _foreign_lock(inventory, 60)
    rc, out, _ = _run(inventory, tmp)
    assert rc != 0 and "ops@elsewhere, ansible-playbook PID 4242" in out, out
    rc, out, _ = _run(inventory, tmp, "-e", "server_lock_break=true")
    assert rc == 0 and "reason: broken" in out, out
    _foreign_lock(inventory, 7200)
    rc, out, _ = _run(inventory, tmp)
    assert rc == 0 and "reason: stale" in out, out
