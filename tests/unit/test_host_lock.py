"""The host lock (plugins/modules/host_lock.py + plugins/action/host_lock.py): when a run takes it, and what it says.

The container test (tests/lock) runs two real runs against one host; these hold the decisions and the wiring.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import load_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def module() -> ModuleType:
    return load_module(REPO / "plugins" / "modules" / "host_lock.py")


@pytest.fixture(scope="module")
def action() -> ModuleType:
    return load_module(REPO / "plugins" / "action" / "host_lock.py")


def _params(**over: object) -> dict[str, object]:
    return {"token": "me", "break_lock": False, "takeover": "", "stale_after": 3600, **over}


@pytest.mark.parametrize(
    ("holder", "params", "expected"),
    [
        (None, {}, (True, "free")),
        ({"token": "me", "acquired": 0}, {}, (True, "own")),
        ({"token": "other", "acquired": 1000.0}, {}, (False, "held")),
        ({"token": "other", "acquired": 1000.0}, {"break_lock": True}, (True, "broken")),
        ({"token": "other", "acquired": 1000.0}, {"takeover": "other"}, (True, "holder gone")),
        ({"token": "other", "acquired": 1000.0}, {"takeover": "a third"}, (False, "held")),
        ({"token": "other", "acquired": 1000.0 - 3601}, {}, (True, "stale")),
        ({"token": "other", "acquired": "garbled"}, {}, (True, "stale")),
    ],
)
def test_decide(module: ModuleType, holder: dict | None, params: dict, expected: tuple[bool, str]) -> None:
    assert module.decide(holder, _params(**params), 1000.0) == expected


def test_the_lock_file_is_root_only_and_refuses_a_symlink(module: ModuleType, tmp_path: Path) -> None:
    fd = module._open(str(tmp_path / "lock"))
    module._write(fd, {"token": "x"})
    assert module._read(fd) == {"token": "x"}
    module._write(fd, None)
    assert module._read(fd) is None
    os.close(fd)
    assert (tmp_path / "lock").stat().st_mode & 0o777 == 0o600
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        module._open(str(tmp_path / "link"))
    assert not (tmp_path / "elsewhere").exists()


def test_the_owner_names_this_process_and_its_start(action: ModuleType) -> None:
    owner = action.run_owner(os.getpid())
    assert owner["pid"] == os.getpid()
    assert abs(owner["pid_started"] - time.time()) < 24 * 3600
    assert action.token_of(owner) == action.token_of(action.run_owner(os.getpid()))


def test_a_dead_holder_of_this_controller_is_gone_a_live_or_foreign_one_is_not(action: ModuleType) -> None:
    here = action.run_owner(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = {"owner": {**here, "pid": child.pid, "pid_started": here["pid_started"]}}
    assert action.holder_gone(dead, here)
    assert not action.holder_gone({"owner": here}, here)
    assert not action.holder_gone({"owner": {**dead["owner"], "controller": "elsewhere"}}, here)
    # the PID alive again but as another process (reused): its start time differs, the holder is gone
    reused = {"owner": {**here, "pid_started": here["pid_started"] - 3600}}
    assert action.holder_gone(reused, here)


def test_the_message_names_the_holder_and_how_to_break_it(action: ModuleType) -> None:
    holder = {
        "owner": {"user": "ops", "controller": "ctl1", "pid": 4242, "started": "2026-01-01T10:00:00+0000"},
        "acquired_iso": "2026-01-01T10:00:05+0000",
    }
    msg = action.describe(holder, 30, "/run/x.lock", 3600)
    for part in (
        "ops@ctl1",
        "PID 4242",
        "since 2026-01-01T10:00:05+0000 (30 s ago)",
        "server_lock_stale_after=3600",
        "server_lock_break=true",
    ):
        assert part in msg


@pytest.mark.parametrize("playbook", ["site.yml", "deploy.yml"])
def test_the_playbooks_take_the_lock_first_and_release_it_last(playbook: str) -> None:
    plays = yaml.safe_load((REPO / "playbooks" / playbook).read_text())
    play = next(p for p in plays if p["hosts"] == "all:!lb")
    first, last = play["pre_tasks"][0], play["post_tasks"][-1]
    assert first["ansible.builtin.include_role"] == {"name": "server", "tasks_from": "lock"}
    assert last["ansible.builtin.include_role"] == {"name": "server", "tasks_from": "unlock"}
