"""The patched Meinheld wheel for a lab guest, built on the controller instead of in the TCG guest.

Compiling Meinheld inside a TCG guest takes about 15 minutes of a converge; on the controller it takes about a minute.
A wheel (tag linux_x86_64, not manylinux) fits a guest when it was built by the same CPython minor version and
against a glibc no newer than the guest's: glibc is backwards compatible, never forwards. So the controller builds
with its own /usr/bin/python3 when that is the guest's minor (Debian 12 on Debian 12), else with a pyenv CPython of
that minor (built on this host, so linked against the host's glibc), and refuses when the host's glibc is newer than
the guest's (Ubuntu 22.04's 2.35 under a Debian 12 controller's 2.36): then the role builds in the guest as before.

Wheels are cached in ``.cache/meinheld/lab/DIST-VERSION/``, VERSION being meinheld_build's, which carries the patch
series hash: a changed series builds a new wheel, and checkouts at different commits sharing one .cache (snapshot
clones) never replace each other's wheel (build_wheel empties its output directory of older wheels).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import progress
from lab.dists import Dist
from lab.paths import REPO_ROOT
from meinheld_build import build

WHEEL_CACHE = REPO_ROOT / ".cache" / "meinheld"
SERVER_REQUIREMENTS = REPO_ROOT / "roles" / "server" / "files" / "requirements.txt"
SYSTEM_PYTHON = Path("/usr/bin/python3")


@dataclass(frozen=True)
class WheelChoice:
    """The outcome for one guest: a wheel path (built now or reused), or None and why the guest must build it."""

    dist: str
    wheel: Path | None
    built: bool
    python: str
    reason: str


def version_tuple(version: str) -> tuple[int, ...]:
    """'2.36' -> (2, 36), so glibc and Python versions compare as numbers, not strings ('2.4' < '2.36')."""
    return tuple(int(n) for n in re.findall(r"\d+", version))


def host_glibc() -> str:
    """The controller's glibc version ('2.36'); empty when the C library is not glibc (musl hosts)."""
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    except (ValueError, OSError):
        return ""
    return version if name == "glibc" else ""


def glibc_problem(host: str, guest: str) -> str:
    """Why a wheel built against host's glibc cannot run on the guest's; '' when it can."""
    if not host:
        return "the controller's C library is not glibc"
    if version_tuple(host) > version_tuple(guest):
        return f"the controller's glibc {host} is newer than the guest's {guest}"
    return ""


def python_minor(python: Path) -> str:
    """'3.11' for an interpreter path; '' when it does not run."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.strip()


def find_python(minor: str, system: Path = SYSTEM_PYTHON, pyenv_root: Path | None = None) -> Path | None:
    """The controller interpreter of CPython `minor`: the system python3 if it is that minor, else pyenv's newest."""
    if system.exists() and python_minor(system) == minor:
        return system
    root = pyenv_root or Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found = [
        p
        for p in root.glob(f"versions/{minor}.*/bin/python3")
        if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.parts[-3])
    ]
    return max(found, key=lambda p: version_tuple(p.parts[-3]), default=None)


def cached(out_dir: Path, version: str, minor: str) -> Path | None:
    """The cached wheel of this build version for CPython `minor` (tag cpXY), if exactly one is there."""
    tag = "cp" + minor.replace(".", "")
    found = sorted(out_dir.glob(f"meinheld-{version}-{tag}-*.whl"))
    return found[0] if len(found) == 1 else None


def for_dist(dist: Dist, cache: Path = WHEEL_CACHE) -> WheelChoice:
    """Build or reuse the wheel for dist's guests; a choice without a wheel says why the guest has to build it."""
    problem = glibc_problem(host_glibc(), dist.glibc)
    if problem:
        return WheelChoice(dist.name, None, False, "", f"{problem}: the role builds Meinheld in the guest")
    python = find_python(dist.python)
    if python is None:
        reason = f"no CPython {dist.python} on the controller (/usr/bin/python3 or pyenv): the role builds in the guest"
        return WheelChoice(dist.name, None, False, "", reason)
    version = build.local_version(build.read_series())
    out_dir = cache / "lab" / f"{dist.name}-{version}"
    existing = cached(out_dir, version, dist.python)
    if existing is not None:
        return WheelChoice(dist.name, existing, False, str(python), "cached")
    progress.step(f"building the Meinheld wheel {version} for {dist.name} with {python} (about a minute)")
    wheel = build.build_wheel(str(python), out_dir, download_dir=cache / "downloads", constraint=SERVER_REQUIREMENTS)
    return WheelChoice(dist.name, wheel, True, str(python), "built")
