"""What machine a result came from and how busy it was: a figure without its conditions cannot be compared."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def loadavg(path: Path = Path("/proc/loadavg")) -> list[float]:
    """The 1, 5 and 15 minute load averages (what `uptime` prints)."""
    return [float(v) for v in path.read_text().split()[:3]]


def cpu_model(path: Path = Path("/proc/cpuinfo")) -> str:
    """The processor's model name as the kernel reports it."""
    for line in path.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def os_name(path: Path = Path("/etc/os-release")) -> str:
    """PRETTY_NAME of the distribution."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def memory_gib(path: Path = Path("/proc/meminfo")) -> float:
    """Total memory in GiB."""
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return 0.0


def _version(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else None


def describe() -> dict[str, Any]:
    """The machine, the tools, and the load right now."""
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": os_name(),
        "kernel": platform.release(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version(["nginx", "-v"]),
        "loadavg_start": loadavg(),
    }
