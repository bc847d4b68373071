"""tests/image/boot.py: how the boot test hands a built image its key and keeps systemd making its own machine-id."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from lab import qemu, ssh
from tests.image import boot


def spec(tmp_path: Path) -> qemu.VmSpec:
    return qemu.VmSpec(
        name="image-1cpu",
        overlay=tmp_path / "overlay.qcow2",
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        cpus=1,
        memory_mib=1024,
        ssh_port=2301,
        http_port=2302,
        accel_args=("-accel", "tcg"),
        serial_log=tmp_path / "serial.log",
        pidfile=tmp_path / "qemu.pid",
        machine_id="",
    )


def test_the_credential_travels_base64_encoded_in_smbios_type_11() -> None:
    key = "ssh-ed25519 AAAAC3Nza,C1lZDI1NTE5 lab"
    flag, value = boot.credential_arg("ssh.authorized_keys.root", key)
    assert flag == "-smbios"
    prefix = "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root="
    assert value.startswith(prefix)
    encoded = value.removeprefix(prefix)
    assert "," not in encoded  # a comma would end QEMU's option value
    assert base64.b64decode(encoded).decode() == key


def test_the_kernel_command_line_names_no_machine_id(tmp_path: Path) -> None:
    lab_cmd = qemu.command(spec(tmp_path))
    assert any("systemd.machine_id" in a for a in lab_cmd)  # what the lab does, and the image test must not
    cmd = boot.with_cmdline(lab_cmd, boot.KERNEL_CMDLINE)
    assert cmd[cmd.index("-append") + 1] == boot.KERNEL_CMDLINE
    assert not any("systemd.machine_id" in a for a in cmd)
    assert len(cmd) == len(lab_cmd)


@pytest.mark.parametrize("disks", [[], ["a.qcow2", "b.qcow2"]], ids=["none", "two"])
def test_a_build_dir_must_hold_exactly_one_disk(tmp_path: Path, disks: list[str]) -> None:
    for d in disks:
        (tmp_path / d).write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"expected one \.qcow2"):
        boot.BuiltImage.in_dir(tmp_path)


def test_a_build_dir_names_its_kernel_and_initrd(tmp_path: Path) -> None:
    (tmp_path / "debian12-gunicorn-flask.qcow2").write_bytes(b"")
    img = boot.BuiltImage.in_dir(tmp_path)
    assert (img.disk.name, img.kernel.name, img.initrd.name) == (
        "debian12-gunicorn-flask.qcow2",
        "vmlinuz",
        "initrd.img",
    )


@pytest.mark.parametrize(
    ("line", "out"),
    [("echo a; echo b", "a\nb\n"), ("x=$(printf '%s' 'one two'); echo \"$x|\"", "one two|\n")],
    ids=["sequence", "substitution-and-quotes"],
)
def test_instance_run_hands_the_guest_a_shell_line(tmp_path: Path, monkeypatch, line: str, out: str) -> None:
    # The lab's ssh quotes every argument for the remote shell; run() must still mean "this shell line". The fake runs
    # what the guest's login shell would be given, here.
    def remote_shell(key: Path, port: int, remote: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        login_line = ssh.command(key, port, remote)[-1]
        return subprocess.run(["bash", "-c", login_line], capture_output=True, text=True, timeout=timeout, check=False)

    monkeypatch.setattr(boot.ssh, "run", remote_shell)
    vm = boot.Instance(cpus=1, ssh_port=2301, http_port=2302, key=tmp_path / "key", workdir=tmp_path)
    res = vm.run(line)
    assert (res.returncode, res.stdout) == (0, out), res.stderr
