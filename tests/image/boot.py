"""Boot a built image (not a lab base image) the way a cloud would: a fresh overlay, no Ansible, a key handed in.

The lab's ``up`` boots only its own base images and names the machine-id on the kernel command line, which would
hide whether the image makes its own. This adapter reuses the lab's pieces (QEMU command line, overlay, ports,
accelerator probe, SSH options) and changes three things: any disk with its kernel and initrd, a kernel command line
without ``systemd.machine_id=``, and root's SSH key passed as the systemd credential ``ssh.authorized_keys.root``
(SMBIOS type 11), which systemd's own tmpfiles rule writes to /root/.ssh/authorized_keys at boot. That is how the
image is meant to be used off-cloud; it carries no key of its own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import accel, ports, qemu, ssh, sshkey
from lab import vm as lab_vm
from lab.paths import Layout

KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 panic=-1"


@dataclass(frozen=True)
class BuiltImage:
    """The files `make image` leaves: the qcow2 and the kernel and initrd it boots with."""

    disk: Path
    kernel: Path
    initrd: Path

    @classmethod
    def in_dir(cls, directory: Path) -> BuiltImage:
        """The image in ``directory`` (one *.qcow2 beside vmlinuz and initrd.img)."""
        disks = sorted(directory.glob("*.qcow2"))
        if len(disks) != 1:
            raise FileNotFoundError(f"{directory}: expected one .qcow2, found {[d.name for d in disks]}")
        return cls(disks[0], directory / "vmlinuz", directory / "initrd.img")


def credential_arg(name: str, value: str) -> list[str]:
    """QEMU arguments passing a systemd system credential through SMBIOS type 11 (base64: no comma escaping)."""
    encoded = base64.b64encode(value.encode()).decode()
    return ["-smbios", f"type=11,value=io.systemd.credential.binary:{name}={encoded}"]


def nocloud_seed(directory: Path, instance_id: str, user_data: str) -> Path:
    """A NoCloud seed disk (the "cidata" volume cloud-init's local datasource reads), made by cloud-localds.

    This is how an instance is told things at launch off-cloud; on EC2 the same user-data comes from the metadata
    service.
    """
    (directory / "user-data").write_text(user_data)
    (directory / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {instance_id}\n")
    seed = directory / "seed.img"
    subprocess.run(
        ["cloud-localds", str(seed), str(directory / "user-data"), str(directory / "meta-data")],
        check=True,
        capture_output=True,
    )
    return seed


def seed_drive(seed: Path) -> list[str]:
    """QEMU arguments attaching a seed disk read-only after the root disk (the guest sees it as /dev/vdb)."""
    return ["-drive", f"file={seed},if=virtio,format=raw,readonly=on"]


def with_cmdline(command: list[str], cmdline: str) -> list[str]:
    """The lab's QEMU command with its ``-append`` value replaced."""
    out = list(command)
    out[out.index("-append") + 1] = cmdline
    return out


@dataclass
class Instance:
    """A running instance of the image: its forwarded ports and a way to run commands in it."""

    cpus: int
    ssh_port: int
    http_port: int
    key: Path
    workdir: Path
    boot_seconds: float = 0.0
    # time.monotonic() when QEMU was launched, so callers can time their own milestones (first HTTP 200) from power-on.
    launched_at: float = 0.0

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a shell command line in the guest as root, through ``sh -c``: the lab's ssh quotes each argument, so
        the line itself would reach the guest as one word (a command named "systemctl is-active ...")."""
        return ssh.run(self.key, self.ssh_port, ["sh", "-c", command], timeout)

    def serial(self) -> str:
        """The serial console's tail (for failure messages)."""
        return lab_vm.serial_tail(self.workdir)


def _taken_ports(layout: Layout) -> list[int]:
    """Ports the lab's VMs recorded, so an instance never takes one a lab VM is about to bind."""
    return [p for s in lab_vm.all_states(layout) for p in (s.ssh_port, s.http_port)]


def _wait(instance: Instance, pid: int, timeout: float) -> str:
    """Poll SSH until systemd has finished starting up; the answer is running or degraded (the lab's own wait)."""
    deadline = time.monotonic() + timeout
    name = f"image-{instance.cpus}cpu"
    while time.monotonic() < deadline:
        if not lab_vm.is_our_qemu(pid, instance.workdir):
            raise RuntimeError(f"QEMU exited during boot. Serial console:\n{instance.serial()}")
        try:
            answer, _ = ssh.system_state(instance.key, instance.ssh_port, name, max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
        if answer in ssh.SETTLED:
            return answer
        time.sleep(2)
    raise RuntimeError(f"not up after {timeout:.0f}s. Serial console:\n{instance.serial()}")


@contextlib.contextmanager
def boot(
    image: BuiltImage, cpus: int, memory_mib: int = 1024, timeout: float = 600, user_data: str | None = None
) -> Iterator[Instance]:
    """Boot ``image`` from a throw-away overlay with ``cpus`` vCPUs; stop QEMU and delete the overlay on exit.

    user_data: a cloud-config handed to the instance on a NoCloud seed disk (instance-id seed-CPUScpu).
    """
    layout = Layout.default()
    pubkey = sshkey.ensure(layout).read_text().strip()
    with tempfile.TemporaryDirectory(prefix="image-boot-", dir=os.environ.get("TMPDIR")) as tmp:
        workdir = Path(tmp)
        overlay = workdir / "overlay.qcow2"
        subprocess.run(qemu.overlay_command(image.disk, overlay), check=True)
        ssh_port, http_port = ports.allocate(2, _taken_ports(layout))
        spec = qemu.VmSpec(
            name=f"image-{cpus}cpu",
            overlay=overlay,
            kernel=image.kernel,
            initrd=image.initrd,
            cpus=cpus,
            memory_mib=memory_mib,
            ssh_port=ssh_port,
            http_port=http_port,
            accel_args=tuple(accel.args_for(accel.detect(layout.root / "accel.json", image.kernel))),
            serial_log=workdir / "serial.log",
            pidfile=workdir / "qemu.pid",
            machine_id="",
        )
        command = with_cmdline(qemu.command(spec), KERNEL_CMDLINE) + credential_arg("ssh.authorized_keys.root", pubkey)
        if user_data is not None:
            command += seed_drive(nocloud_seed(workdir, f"seed-{cpus}cpu", user_data))
        started = time.monotonic()
        instance = Instance(cpus, ssh_port, http_port, layout.ssh_key, workdir, launched_at=started)
        launched = subprocess.run(command, capture_output=True, text=True, check=False)
        if launched.returncode != 0:
            raise RuntimeError(f"qemu did not start: {launched.stderr.strip()}")
        pid = int(spec.pidfile.read_text().strip())
        try:
            _wait(instance, pid, timeout)
            instance.boot_seconds = round(time.monotonic() - started, 1)
            yield instance
        finally:
            if lab_vm.is_our_qemu(pid, workdir):
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    if not lab_vm.is_our_qemu(pid, workdir):
                        break
                    time.sleep(0.1)
                else:
                    os.kill(pid, signal.SIGKILL)
