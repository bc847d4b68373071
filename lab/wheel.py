"""The patched Meinheld wheel for a lab guest, built in its distribution's own root instead of in the TCG guest.

Compiling Meinheld inside a TCG guest takes about 15 minutes of a converge; in a build root on the controller it takes
seconds. A wheel (tag linux_x86_64, not manylinux) fits a guest when it was built by the same CPython minor against a
glibc no newer than the guest's. lab/roots.py builds each supported distribution's own root from its archives, so
the wheel built there has the guest's interpreter and glibc by construction: every guest gets one, Ubuntu 22.04
included, and no guest needs a compiler. The Meinheld tier (tests/meinheld) takes its patched wheels from here too.

Wheels are cached in ``.cache/meinheld/lab/DIST-VERSION/``, VERSION being meinheld_build's, which carries the patch
series hash: a changed series builds a new wheel, and checkouts at different commits sharing one .cache (snapshot
clones) never replace each other's wheel (build_wheel empties its output directory of older wheels).
``.cache/meinheld/lab/DIST-current`` is a symlink to the directory of the wheel last handed out for DIST: the stable
path the lab inventory names, so a plain ``ansible-playbook playbooks/site.yml`` after ``make demo`` installs the
wheel the demo installed and changes nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import locking, progress, roots
from lab.dists import Dist
from lab.paths import REPO_ROOT, Layout
from meinheld_build import build

WHEEL_CACHE = REPO_ROOT / ".cache" / "meinheld"
SERVER_REQUIREMENTS = REPO_ROOT / "roles" / "server" / "files" / "requirements.txt"
BUILDER = REPO_ROOT / "meinheld_build" / "build.py"


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


def cached(out_dir: Path, version: str, minor: str) -> Path | None:
    """The cached wheel of this build version for CPython `minor` (tag cpXY), if exactly one is there."""
    tag = "cp" + minor.replace(".", "")
    found = sorted(out_dir.glob(f"meinheld-{version}-{tag}-*.whl"))
    return found[0] if len(found) == 1 else None


def current_link(dist: Dist, cache: Path = WHEEL_CACHE) -> Path:
    """The stable directory (a symlink) holding the wheel last handed out for dist's guests."""
    return cache / "lab" / f"{dist.name}-current"


def point_current(link: Path, out_dir: Path) -> None:
    """Point ``link`` at ``out_dir`` (relative, replaced atomically), so a reader never finds it missing."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(out_dir.name)
    tmp.replace(link)


def build_command(root: Path, out_dir: Path, cache: Path) -> list[str]:
    """meinheld_build run by the root's /usr/bin/python3, writing the wheel into out_dir (the checkout is bound in)."""
    argv = ["python3", str(BUILDER), "--out", str(out_dir), "--download-dir", str(cache / "downloads")]
    return roots.run_command(root, [*argv, "--constraint", str(SERVER_REQUIREMENTS)])


def for_dist(dist: Dist, cache: Path = WHEEL_CACHE, layout: Layout | None = None) -> WheelChoice:
    """Build or reuse the wheel for dist's guests; a choice without a wheel says why the guest has to build it."""
    if os.geteuid() != 0:
        reason = "building a distribution root needs root (mmdebstrap, chroot): the role builds Meinheld in the guest"
        return WheelChoice(dist.name, None, False, "", reason)
    layout = layout or Layout.default()
    version = build.local_version(build.read_series())
    out_dir = cache / "lab" / f"{dist.name}-{version}"
    with locking.exclusive(layout.lock.with_name(f"wheel-{dist.name}.lock")):
        existing = cached(out_dir, version, dist.python)
        if existing is not None:
            point_current(current_link(dist, cache), out_dir)
            return WheelChoice(dist.name, existing, False, f"{dist.name} root python{dist.python}", "cached")
        root = roots.build(dist, layout)
        progress.step(f"building the Meinheld wheel {version} for {dist.name} in its root (Python {dist.python})")
        subprocess.run(build_command(root, out_dir, cache), check=True, stdout=subprocess.DEVNULL)
        wheel = cached(out_dir, version, dist.python)
        if wheel is None:
            raise RuntimeError(f"the build in {root} left no cp{dist.python.replace('.', '')} wheel in {out_dir}")
        point_current(current_link(dist, cache), out_dir)
        return WheelChoice(dist.name, wheel, True, f"{dist.name} root python{dist.python}", "built")
