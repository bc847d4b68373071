from pathlib import Path

import pytest

from lab import accel, qemu, ssh


def spec(**over: object) -> qemu.VmSpec:
    base = {
        "name": "t1",
        "overlay": Path("/v/overlay.qcow2"),
        "kernel": Path("/i/vmlinuz"),
        "initrd": Path("/i/initrd.img"),
        "cpus": 2,
        "memory_mib": 2048,
        "ssh_port": 2300,
        "http_port": 2301,
        "accel_args": tuple(accel.args_for("tcg")),
        "serial_log": Path("/v/serial.log"),
        "pidfile": Path("/v/qemu.pid"),
        "machine_id": "0" * 32,
    }
    base.update(over)
    return qemu.VmSpec(**base)  # type: ignore[arg-type]


def arg_after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_command_boots_the_kernel_directly_from_the_overlay() -> None:
    cmd = qemu.command(spec())
    assert arg_after(cmd, "-kernel") == "/i/vmlinuz"
    assert arg_after(cmd, "-initrd") == "/i/initrd.img"
    assert arg_after(cmd, "-drive") == "file=/v/overlay.qcow2,if=virtio,format=qcow2,discard=unmap"
    append = arg_after(cmd, "-append")
    assert append.startswith("root=/dev/vda rw console=ttyS0")
    assert "systemd.hostname=t1" in append


def test_command_sets_cpus_memory_and_accelerator() -> None:
    cmd = qemu.command(spec(cpus=1, memory_mib=1024))
    assert arg_after(cmd, "-smp") == "1"
    assert arg_after(cmd, "-m") == "1024"
    assert arg_after(cmd, "-accel") == "tcg,thread=multi"
    assert arg_after(cmd, "-cpu") == "max"


def test_forwards_only_on_loopback() -> None:
    netdev = arg_after(qemu.command(spec()), "-netdev")
    assert netdev == "user,id=net0,hostfwd=tcp:127.0.0.1:2300-:22,hostfwd=tcp:127.0.0.1:2301-:80"


def test_command_daemonizes_with_a_pidfile_and_serial_log() -> None:
    cmd = qemu.command(spec())
    assert arg_after(cmd, "-pidfile") == "/v/qemu.pid"
    assert arg_after(cmd, "-serial") == "file:/v/serial.log"
    assert "-daemonize" in cmd


def test_guest_reboots_stay_in_the_vm() -> None:
    # playbooks and the verify suite reboot hosts; -no-reboot would end the VM instead
    assert "-no-reboot" not in qemu.command(spec())


def test_zero_cpus_is_refused() -> None:
    with pytest.raises(ValueError):
        qemu.command(spec(cpus=0))


def test_overlay_is_backed_by_the_image() -> None:
    assert qemu.overlay_command(Path("/i/disk.qcow2"), Path("/v/o.qcow2")) == [
        "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", "/i/disk.qcow2", "/v/o.qcow2"
    ]  # fmt: skip


@pytest.mark.parametrize(("text", "mib"), [("2048", 2048), ("2G", 2048), ("1g", 1024), ("512M", 512)])
def test_parse_memory(text: str, mib: int) -> None:
    assert qemu.parse_memory(text) == mib


@pytest.mark.parametrize("text", ["", "2T", "lots", "128"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        qemu.parse_memory(text)


@pytest.mark.parametrize(
    ("name", "expected"), [("kvm", ["-accel", "kvm", "-cpu", "host"]), ("tcg", list(accel.TCG_ARGS))]
)
def test_accel_args(name: str, expected: list[str]) -> None:
    assert accel.args_for(name) == expected


def test_unknown_accel_is_refused() -> None:
    with pytest.raises(ValueError):
        accel.args_for("hvf")


def test_kvm_probe_boots_the_kernel_to_a_panic_and_exits() -> None:
    cmd = accel.probe_command(Path("/k"), Path("/s.log"))
    assert cmd[1:5] == ["-accel", "kvm", "-cpu", "host"]
    assert "-no-reboot" in cmd
    assert "panic=-1" in arg_after(cmd, "-append")


def test_detect_honours_override_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "accel.json"
    monkeypatch.setenv("LAB_ACCEL", "tcg")
    assert accel.detect(cache, Path("/k")) == "tcg"
    monkeypatch.delenv("LAB_ACCEL")
    calls = []
    monkeypatch.setattr(accel, "probe_kvm", lambda k: calls.append(k) or True)
    assert accel.detect(cache, Path("/k")) == "kvm"
    assert accel.detect(cache, Path("/k")) == "kvm"
    assert len(calls) == 1


def test_ssh_quotes_the_remote_argv() -> None:
    cmd = ssh.command(Path("/k"), 2300, ["sh", "-c", 'for f in /a/*; do echo "$f"; done'])
    assert cmd[-2:] == ["--", "sh -c 'for f in /a/*; do echo \"$f\"; done'"]
    assert cmd[cmd.index("-p") + 1] == "2300"
    assert "BatchMode=yes" in cmd
