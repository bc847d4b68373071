import os
from pathlib import Path

import pytest

from lab import report, vm
from lab.paths import Layout


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path)


def state(name: str, ssh: int = 0, http: int = 0) -> vm.VmState:
    return vm.VmState(name, "debian12", 2, 2048, ssh, http, "tcg", "debian12-x")


@pytest.mark.parametrize("name", ["demo", "mol-debian12", "a1"])
def test_valid_names(name: str) -> None:
    assert vm.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "Demo", "a b", "-x", "../x", "x" * 40])
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError):
        vm.validate_name(name)


def test_reserve_gives_two_vms_distinct_ports(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.ports, "is_free", lambda p: True)
    a = vm._reserve(layout, state("a"), None, None)
    b = vm._reserve(layout, state("b"), None, None)
    assert {a.ssh_port, a.http_port}.isdisjoint({b.ssh_port, b.http_port})
    assert [s.name for s in vm.all_states(layout)] == ["a", "b"]


def test_reserve_refuses_a_fixed_port_another_vm_holds(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.ports, "is_free", lambda p: True)
    vm._reserve(layout, state("demo"), 2222, 8080)
    with pytest.raises(RuntimeError, match="2222"):
        vm._reserve(layout, state("other"), 2222, None)


def test_reserve_keeps_fixed_ports_and_allocates_the_rest(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.ports, "is_free", lambda p: True)
    s = vm._reserve(layout, state("x"), None, 8080)
    assert s.http_port == 8080
    assert s.ssh_port == vm.ports.RANGE_START


def test_state_round_trips(layout: Layout) -> None:
    layout.vm_dir("a").mkdir(parents=True)
    vm.save(layout, state("a", 1, 2))
    assert vm.load(layout, "a") == state("a", 1, 2)
    assert vm.load(layout, "missing") is None


def test_a_foreign_pid_is_never_ours(tmp_path: Path) -> None:
    assert not vm.is_our_qemu(os.getpid(), tmp_path)
    assert not vm.is_our_qemu(0, tmp_path)


def test_serial_tail_returns_the_last_lines(tmp_path: Path) -> None:
    (tmp_path / "serial.log").write_text("".join(f"line {i}\r\n" for i in range(100)))
    tail = vm.serial_tail(tmp_path, 3)
    assert tail == "line 97\nline 98\nline 99"


@pytest.mark.parametrize(("log", "panicked"), [("ok\nKernel panic - not syncing: VFS\n", True), ("booting\n", False)])
def test_kernel_panic_is_spotted_in_the_serial_log(tmp_path: Path, log: str, panicked: bool) -> None:
    (tmp_path / "serial.log").write_text(log)
    assert vm.kernel_panicked(tmp_path) is panicked


def test_write_inventory_lists_every_vm(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm.ports, "is_free", lambda p: True)
    a = vm._reserve(layout, state("a"), None, None)
    vm._reserve(layout, state("b"), None, None)
    own = vm.write_inventory(layout, a).read_text()
    assert "        a:" in own and "        b:" not in own
    shared = (layout.vms / "inventory.yml").read_text()
    assert "        a:" in shared and "        b:" in shared


def test_down_of_an_unknown_vm_is_a_no_op(layout: Layout) -> None:
    assert vm.down(layout, "nothing") is False


PS = """\
    1     0 init.scope      /sbin/init
  500     1 gunicorn@example.service /srv/example/venv/bin/python3 -m gunicorn --chdir /srv/example/app -c c.py main:app
  510   500 gunicorn@example.service /srv/example/venv/bin/python3 -m gunicorn --chdir /srv/example/app -c c.py main:app
  511   500 gunicorn@example.service /srv/example/venv/bin/python3 -m gunicorn --chdir /srv/example/app -c c.py main:app
  600     1 ssh.service     sshd: /usr/sbin/sshd -D
"""


def test_gunicorn_masters_count_their_workers() -> None:
    assert report.gunicorn_masters(PS) == [report.Master(500, "gunicorn@example.service", 2)]


def test_no_gunicorn_means_no_master() -> None:
    assert report.gunicorn_masters("    1     0 init.scope /sbin/init\n") == []
