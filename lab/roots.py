"""Build roots: each supported distribution's own userland (python3, its headers, gcc) as a plain directory tree.

Why: a Meinheld wheel (tag linux_x86_64) runs on a host only when it was built by the same CPython minor against a
glibc no newer than the host's. Built inside the distribution's own root it is both by construction, for every guest
(Ubuntu 22.04 included, whose glibc is older than a Debian 12 controller's), and the Meinheld tier runs each CPython
the supported distributions ship (3.10 to 3.13) in its root the same way: what users run, and no interpreter the
README does not install (no pyenv).

The trees come from the lab's own mmdebstrap recipe (lab/image.py: archives verified with their keyrings, the
machine's CA certificates for pip) with a short package list and no kernel, init or SSH. They are cached under
``.cache/lab/roots/DIST-KEY``, keyed by content (sources, packages, recipe, CAs), so only a changed input rebuilds.

``run_command`` runs a program in a root with chroot inside a private mount namespace that carries /dev, /proc, the
host's resolv.conf, /tmp and the checkout at their own paths: a path means the same inside and out, the process
shares the host's network (the tier's loopback ports) and PID namespace (signals, /proc/PID/children), and every
mount vanishes with the process, so nothing is left to clean up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lab import image, keyring, locking, progress
from lab.dists import Dist
from lab.paths import REPO_ROOT, Layout

# Bump when the recipe below changes what a root holds.
RECIPE_VERSION = 1
# What building and running Meinheld needs: the interpreter, its headers and venv, a C compiler, CAs for pip.
ROOT_PACKAGES = ("ca-certificates", "gcc", "libc6-dev", "python3", "python3-dev", "python3-venv")
# A program in a root finds the root's tools, never the controller's venv or a pyenv shim that PATH may name.
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MANIFEST = "lab-root.json"
CHDIR_AND_EXEC = 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"'


def cache_key(dist: Dist, ca_hash: str) -> str:
    """Content key of a root: the archives, the packages, the recipe and the CAs, nothing else."""
    material = {
        "dist": dist.name,
        "sources": dist.source_lines(),
        "packages": list(ROOT_PACKAGES),
        "recipe": RECIPE_VERSION,
        "ca": ca_hash,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def hook_script() -> str:
    """The customize hook mmdebstrap runs (``sh SCRIPT ROOT PUBKEY CADIR``): trust the machine's CAs, as images do."""
    return 'set -eu\nroot="$1"; cadir="$3"\n' + image.ca_trust_script()


def locate(dist: Dist, layout: Layout) -> Path:
    """Where the root of ``dist`` with the current key lives (built or not)."""
    return layout.root / "roots" / f"{dist.name}-{cache_key(dist, image.ca_digest(image.ca_certificates()))}"


def manifest(root: Path) -> dict[str, object]:
    """What the build recorded (dist, python, build_seconds); empty when the root is not complete."""
    try:
        return json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def build(dist: Dist, layout: Layout, force: bool = False) -> Path:
    """Build the root of ``dist`` unless an identical one is cached; return its path either way.

    Safe to call from several threads or processes at once: one lock per dist, and the tree appears under its final
    name only when complete (its manifest is written last).
    """
    target = locate(dist, layout)
    with locking.exclusive(layout.lock.with_name(f"build-root-{dist.name}.lock")):
        if manifest(target) and not force:
            return target
        started = time.monotonic()
        work = target.with_name(f".build-{target.name}-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            cadir = image.stage_ca_certificates(work)
            hook = work / "customize.sh"
            hook.write_text(hook_script())
            with locking.exclusive(layout.lock.with_name("keyring.lock")):
                archive_keyring = keyring.host_keyring(dist, layout)
            rootfs = work / "rootfs"
            cmd = image.mmdebstrap_command(
                dist, archive_keyring, rootfs, hook, Path("/dev/null"), cadir, packages=ROOT_PACKAGES
            )
            progress.step(f"mmdebstrap {dist.suite}: the {dist.name} build root ({', '.join(ROOT_PACKAGES)})")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            # run_command binds the host's resolv.conf here: it must be a plain file, not a (dangling) symlink.
            resolv = rootfs / "etc" / "resolv.conf"
            if resolv.is_symlink() or not resolv.exists():
                resolv.unlink(missing_ok=True)
                resolv.touch()
            python = subprocess.run(
                run_command(rootfs, ["python3", "-c", "import platform; print(platform.python_version())"]),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            seconds = round(time.monotonic() - started, 1)
            record = {"dist": dist.name, "suite": dist.suite, "python": python, "build_seconds": seconds}
            (rootfs / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
            shutil.rmtree(target, ignore_errors=True)
            rootfs.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        progress.step(f"build root {target.name} (Python {python}) built in {seconds:.0f}s")
        return target


def run_command(root: Path, argv: Sequence[str], binds: Sequence[Path] = ()) -> list[str]:
    """The command that runs ``argv`` inside ``root`` (see the module docstring), the checkout and /tmp bound in.

    The process keeps its PID (each step execs the next), so a caller's Popen.pid is the program itself, and its
    working directory (Popen's cwd) when that is visible inside.
    """
    mounts = [
        f"mount --rbind /dev {shlex.quote(str(root / 'dev'))}",
        f"mount -t proc proc {shlex.quote(str(root / 'proc'))}",
        f"mount --bind /etc/resolv.conf {shlex.quote(str(root / 'etc/resolv.conf'))}",
    ]
    for path in (Path(tempfile.gettempdir()), REPO_ROOT, *binds):
        inside = shlex.quote(str(root / path.resolve().relative_to("/")))
        mounts.append(f"mkdir -p {inside} && mount --rbind {shlex.quote(str(path.resolve()))} {inside}")
    # chroot changes to / inside the root; the inner shell returns to the caller's directory (bound at its own path).
    enter = f'exec chroot {shlex.quote(str(root))} /bin/sh -c {shlex.quote(CHDIR_AND_EXEC)} sh "$PWD"'
    run = shlex.join(["/usr/bin/env", "-u", "VIRTUAL_ENV", f"PATH={ROOT_PATH}", *argv])
    script = " && ".join([*mounts, f"{enter} {run}"])
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
