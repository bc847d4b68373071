"""The QEMU command line of a lab VM: direct kernel boot of a throw-away overlay, user networking on loopback."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

GUEST_SSH_PORT = 22
GUEST_HTTP_PORT = 80


@dataclass(frozen=True)
class VmSpec:
    """Everything that decides one VM's command line."""

    name: str
    overlay: Path
    kernel: Path
    initrd: Path
    cpus: int
    memory_mib: int
    ssh_port: int
    http_port: int
    accel_args: tuple[str, ...]
    serial_log: Path
    pidfile: Path
    machine_id: str


def parse_memory(text: str) -> int:
    """Memory in MiB from '2048', '2048M' or '2G' (QEMU's own spelling), rejecting anything below 256 MiB."""
    m = re.fullmatch(r"(\d+)([MmGg]?)", text.strip())
    if not m:
        raise ValueError(f"memory {text!r}: use MiB as a number, or a suffix M or G (e.g. 2G)")
    mib = int(m.group(1)) * (1024 if m.group(2).lower() == "g" else 1)
    if mib < 256:
        raise ValueError(f"memory {text!r}: a systemd guest needs at least 256 MiB")
    return mib


def kernel_cmdline(spec: VmSpec) -> str:
    """Root on the virtio disk; serial console for the boot log; a panic reboots at once (spotted in the log)."""
    return f"root=/dev/vda rw console=ttyS0 panic=-1 systemd.hostname={spec.name} systemd.machine_id={spec.machine_id}"


def hostfwd(spec: VmSpec) -> str:
    """User networking with SSH and HTTP forwarded from 127.0.0.1 only: the lab is never reachable from outside."""
    return (
        "user,id=net0,"
        f"hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:{GUEST_SSH_PORT},"
        f"hostfwd=tcp:127.0.0.1:{spec.http_port}-:{GUEST_HTTP_PORT}"
    )


def command(spec: VmSpec) -> list[str]:
    """The full qemu-system-x86_64 invocation; it daemonizes once the VM is set up and records its pid."""
    if spec.cpus < 1:
        raise ValueError("a VM needs at least 1 vCPU")
    return [
        "qemu-system-x86_64",
        "-name",
        f"lab-{spec.name}",
        *spec.accel_args,
        "-machine",
        "q35",
        "-smp",
        str(spec.cpus),
        "-m",
        str(spec.memory_mib),
        "-nodefaults",
        "-display",
        "none",
        "-kernel",
        str(spec.kernel),
        "-initrd",
        str(spec.initrd),
        "-append",
        kernel_cmdline(spec),
        "-drive",
        f"file={spec.overlay},if=virtio,format=qcow2,discard=unmap",
        "-netdev",
        hostfwd(spec),
        "-device",
        "virtio-net-pci,netdev=net0",
        "-device",
        "virtio-rng-pci",
        "-serial",
        f"file:{spec.serial_log}",
        "-pidfile",
        str(spec.pidfile),
        "-daemonize",
    ]


def overlay_command(base: Path, overlay: Path) -> list[str]:
    """A copy-on-write overlay over the cached image: the VM writes there, the image stays pristine."""
    return ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)]
