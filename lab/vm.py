"""Lifecycle of lab VMs: up (overlay, ports, boot, wait for systemd), down (stop, delete), status.

Each VM owns ``vms/NAME/`` (overlay, serial log, pid file, state.json, inventory.yml); ports are chosen and
recorded under the lab lock, so any number of VMs and concurrent lab commands coexist.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lab import accel, dists, image, inventory, locking, ports, progress, qemu, ssh, sshkey
from lab.paths import Layout

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,30}")
SERIAL_TAIL_LINES = 30


class BootError(RuntimeError):
    """The VM did not come up; the message carries the serial console's last lines."""


@dataclass
class VmState:
    """What the lab records about a VM in its state.json."""

    name: str
    dist: str
    cpus: int
    memory_mib: int
    ssh_port: int
    http_port: int
    accel: str
    image: str
    pid: int = 0
    system_state: str = "starting"
    boot_seconds: float = 0.0

    def host(self) -> inventory.Host:
        """The inventory view of this VM."""
        return inventory.Host(self.name, self.ssh_port, self.http_port, self.dist, self.cpus)


def validate_name(name: str) -> str:
    """VM names become hostnames and directory names: lower-case letters, digits, dashes."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"VM name {name!r}: use lower-case letters, digits and dashes (max 31)")
    return name


def load(layout: Layout, name: str) -> VmState | None:
    """The recorded state of VM ``name``, or None when there is none."""
    path = layout.vm_dir(name) / "state.json"
    try:
        return VmState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def save(layout: Layout, state: VmState) -> None:
    """Record ``state`` atomically (readers never see half a file)."""
    path = layout.vm_dir(state.name) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(state), indent=2) + "\n")
    tmp.replace(path)


def all_states(layout: Layout) -> list[VmState]:
    """Every VM the lab has a record of."""
    if not layout.vms.is_dir():
        return []
    found = (load(layout, d.name) for d in sorted(layout.vms.iterdir()) if d.is_dir())
    return [s for s in found if s is not None]


def is_our_qemu(pid: int, vm_dir: Path) -> bool:
    """True when ``pid`` is the QEMU of this VM (a recycled pid must never be signalled)."""
    if pid <= 0:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmdline) and b"qemu-system" in cmdline[0] and any(str(vm_dir).encode() in a for a in cmdline)


def serial_tail(vm_dir: Path, lines: int = SERIAL_TAIL_LINES) -> str:
    """The serial console's last lines, the only witness of a boot that never reached SSH."""
    try:
        text = (vm_dir / "serial.log").read_text(errors="replace")
    except OSError:
        return "(no serial output)"
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def kernel_panicked(vm_dir: Path) -> bool:
    """A panic reboots the guest (panic=-1; reboots must work for playbooks), so the log is where a panic shows."""
    try:
        return "Kernel panic - not syncing" in (vm_dir / "serial.log").read_text(errors="replace")
    except OSError:
        return False


def write_inventory(layout: Layout, state: VmState) -> Path:
    """The per-VM inventory, plus ``vms/inventory.yml`` covering every running VM."""
    key = layout.ssh_key
    path = layout.vm_dir(state.name) / "inventory.yml"
    path.write_text(inventory.render([state.host()], key))
    (layout.vms / "inventory.yml").write_text(inventory.render([s.host() for s in all_states(layout)], key))
    return path


def _reserve(layout: Layout, state: VmState, ssh_port: int | None, http_port: int | None) -> VmState:
    """Pick and record the VM's ports under the lock, refusing a name that is already running."""
    vm_dir = layout.vm_dir(state.name)
    with locking.exclusive(layout.lock):
        old = load(layout, state.name)
        if old and is_our_qemu(old.pid, vm_dir):
            raise RuntimeError(f"VM {state.name} is already running (ssh port {old.ssh_port}); `down` it first")
        shutil.rmtree(vm_dir, ignore_errors=True)
        vm_dir.mkdir(parents=True)
        recorded = [p for s in all_states(layout) for p in (s.ssh_port, s.http_port)]
        wanted = [p for p in (ssh_port, http_port) if p is not None]
        for port in wanted:
            if port in recorded or not ports.is_free(port):
                raise RuntimeError(f"port {port} on 127.0.0.1 is taken")
        picked = iter(ports.allocate(2 - len(wanted), recorded + wanted, ports.is_free))
        state.ssh_port = ssh_port if ssh_port is not None else next(picked)
        state.http_port = http_port if http_port is not None else next(picked)
        save(layout, state)
    return state


def up(
    layout: Layout,
    name: str,
    dist_name: str,
    cpus: int,
    memory: str,
    ssh_port: int | None = None,
    http_port: int | None = None,
    timeout: float = 600,
) -> VmState:
    """Boot VM ``name`` and return once systemd reports running or degraded; raise BootError otherwise."""
    validate_name(name)
    dist = dists.get(dist_name)
    memory_mib = qemu.parse_memory(memory)
    sshkey.ensure(layout)
    img = image.build(dist, layout)
    state = VmState(name, dist.name, cpus, memory_mib, 0, 0, "", img.directory.name)
    state = _reserve(layout, state, ssh_port, http_port)
    vm_dir = layout.vm_dir(name)
    state.accel = accel.detect(layout.root / "accel.json", img.kernel)
    subprocess.run(qemu.overlay_command(img.disk, vm_dir / "overlay.qcow2"), check=True)
    spec = qemu.VmSpec(
        name=name,
        overlay=vm_dir / "overlay.qcow2",
        kernel=img.kernel,
        initrd=img.initrd,
        cpus=cpus,
        memory_mib=memory_mib,
        ssh_port=state.ssh_port,
        http_port=state.http_port,
        accel_args=tuple(accel.args_for(state.accel)),
        serial_log=vm_dir / "serial.log",
        pidfile=vm_dir / "qemu.pid",
        machine_id=uuid.uuid4().hex,
    )
    (vm_dir / "qemu.cmdline").write_text(" ".join(qemu.command(spec)) + "\n")
    progress.step(
        f"booting {name} ({dist.name}, {cpus} vCPU, {memory_mib} MiB, {state.accel}); "
        f"ssh 127.0.0.1:{state.ssh_port}, http 127.0.0.1:{state.http_port}"
    )
    started = time.monotonic()
    launched = subprocess.run(qemu.command(spec), capture_output=True, text=True, check=False)
    if launched.returncode != 0:
        raise BootError(f"qemu did not start: {launched.stderr.strip()}")
    state.pid = int((vm_dir / "qemu.pid").read_text().strip())
    save(layout, state)
    try:
        state.system_state = _wait_for_systemd(layout, state, started, timeout)
    except BootError:
        _stop(state, vm_dir)
        state.system_state = "failed"
        save(layout, state)
        raise
    state.boot_seconds = round(time.monotonic() - started, 1)
    save(layout, state)
    write_inventory(layout, state)
    progress.step(f"{name} is up: systemd {state.system_state} after {state.boot_seconds:.0f}s")
    return state


def _wait_for_systemd(layout: Layout, state: VmState, started: float, timeout: float) -> str:
    """Poll SSH until ``systemctl is-system-running --wait`` answers; fail fast if QEMU exits."""
    vm_dir = layout.vm_dir(state.name)
    deadline = started + timeout
    reported_ssh = False
    while time.monotonic() < deadline:
        if not is_our_qemu(state.pid, vm_dir):
            raise BootError(f"VM {state.name}: QEMU exited during boot. Serial console:\n{serial_tail(vm_dir)}")
        if kernel_panicked(vm_dir):
            raise BootError(f"VM {state.name}: the guest kernel panicked. Serial console:\n{serial_tail(vm_dir)}")
        remaining = max(5.0, deadline - time.monotonic())
        try:
            answer, ssh_status = ssh.system_state(layout.ssh_key, state.ssh_port, state.name, remaining)
        except subprocess.TimeoutExpired:
            break
        if answer and not reported_ssh:
            reported_ssh = True
            progress.step(f"{state.name}: SSH answered after {time.monotonic() - started:.0f}s")
        if answer in ssh.SETTLED:
            return answer
        if answer in ("starting", "initializing") or ssh_status == 255:
            time.sleep(2)
            continue
        raise BootError(f"VM {state.name}: systemd says {answer!r}. Serial console:\n{serial_tail(vm_dir)}")
    raise BootError(f"VM {state.name}: not up after {timeout:.0f}s. Serial console:\n{serial_tail(vm_dir)}")


def down(layout: Layout, name: str) -> bool:
    """Stop VM ``name`` and delete its files; False when there was nothing to stop."""
    validate_name(name)
    vm_dir = layout.vm_dir(name)
    if not vm_dir.exists():
        return False
    state = load(layout, name)
    if state:
        _stop(state, vm_dir)
    with locking.exclusive(layout.lock):
        shutil.rmtree(vm_dir, ignore_errors=True)
        if layout.vms.is_dir():
            (layout.vms / "inventory.yml").write_text(
                inventory.render([s.host() for s in all_states(layout)], layout.ssh_key)
            )
    return True


def _stop(state: VmState, vm_dir: Path) -> None:
    """Terminate the VM's QEMU (the overlay is thrown away, so no guest shutdown is needed), SIGKILL after 10 s."""
    if not is_our_qemu(state.pid, vm_dir):
        return
    progress.step(f"stopping {state.name} (pid {state.pid})")
    os.kill(state.pid, signal.SIGTERM)
    for _ in range(100):
        if not is_our_qemu(state.pid, vm_dir):
            return
        time.sleep(0.1)
    os.kill(state.pid, signal.SIGKILL)


def status(layout: Layout) -> list[dict[str, object]]:
    """Every recorded VM with whether its QEMU is alive."""
    return [{**dataclasses.asdict(s), "alive": is_our_qemu(s.pid, layout.vm_dir(s.name))} for s in all_states(layout)]
