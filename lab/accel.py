"""Pick the accelerator: KVM only when it really runs a guest, else TCG.

``/dev/kvm`` existing proves little: inside a Firecracker guest it is a paravirtual KVM on which QEMU aborts (MSR
errors) or crawls. So the probe boots the lab's own kernel with no disk under KVM and asks for a panic: a working
KVM gets there in a second or two; a broken one errors out or times out. The verdict is cached per host boot.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from lab import progress

KVM_ARGS = ("-accel", "kvm", "-cpu", "host")
TCG_ARGS = ("-accel", "tcg,thread=multi", "-cpu", "max")
PROBE_TIMEOUT = 20


def args_for(accel: str) -> list[str]:
    """QEMU arguments of an accelerator name."""
    if accel == "kvm":
        return list(KVM_ARGS)
    if accel == "tcg":
        return list(TCG_ARGS)
    raise ValueError(f"unknown accelerator {accel!r} (kvm or tcg)")


def probe_command(kernel: Path, serial: Path) -> list[str]:
    """Boot ``kernel`` under KVM with no root disk: it must reach 'Kernel panic' and, with -no-reboot, exit."""
    return [
        "qemu-system-x86_64",
        *KVM_ARGS,
        "-machine",
        "q35",
        "-m",
        "256",
        "-nodefaults",
        "-display",
        "none",
        "-no-reboot",
        "-serial",
        f"file:{serial}",
        "-kernel",
        str(kernel),
        "-append",
        "console=ttyS0 panic=-1 root=/dev/lab-probe-none",
    ]


def probe_kvm(kernel: Path) -> bool:
    """True when KVM boots a kernel to its end quickly."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        serial = Path(tmp) / "serial.log"
        try:
            subprocess.run(probe_command(kernel, serial), timeout=PROBE_TIMEOUT, capture_output=True, check=False)
        except subprocess.TimeoutExpired:
            return False
        return serial.exists() and "Kernel panic" in serial.read_text(errors="replace")


def _host_identity() -> str:
    """Changes when the host reboots, so a cached verdict never outlives the kernel it was measured on."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def detect(cache: Path, kernel: Path) -> str:
    """``kvm`` or ``tcg``; LAB_ACCEL overrides, otherwise the cached or freshly probed verdict."""
    forced = os.environ.get("LAB_ACCEL")
    if forced:
        args_for(forced)
        return forced
    ident = _host_identity()
    try:
        cached = json.loads(cache.read_text())
        if cached.get("host") == ident:
            return str(cached["accel"])
    except (OSError, ValueError, KeyError):
        pass
    progress.step("probing whether KVM really runs a guest (cached per host boot)")
    accel = "kvm" if probe_kvm(kernel) else "tcg"
    progress.step(f"accelerator: {accel}")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"host": ident, "accel": accel}) + "\n")
    return accel
