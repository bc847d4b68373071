"""Archive keyrings for the images, obtained through a chain of signatures the host already trusts.

Debian's keyring is on the host. Ubuntu's is not in bookworm, but Debian trixie carries it as the
``ubuntu-keyring`` package: apt downloads that .deb from trixie, checks it against the trixie index signed by the
Debian archive key the host trusts, and only then do we extract the keyring. No key is taken on faith.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from lab import progress
from lab.dists import DEBIAN_KEYRING, UBUNTU_KEYRING_NAME, Dist
from lab.paths import Layout

TRIXIE_SOURCE = f"deb [signed-by={DEBIAN_KEYRING}] http://deb.debian.org/debian trixie main"


def apt_options(workdir: Path) -> list[str]:
    """Options that give apt a private, throw-away state so the host's sources and dpkg database stay untouched."""
    return [
        "-o",
        f"Dir::Etc::SourceList={workdir / 'sources.list'}",
        "-o",
        f"Dir::Etc::SourceParts={workdir / 'sources.list.d'}",
        "-o",
        f"Dir::State={workdir / 'state'}",
        "-o",
        f"Dir::State::status={workdir / 'status'}",
        "-o",
        f"Dir::Cache={workdir / 'cache'}",
        "-o",
        "APT::Architecture=amd64",
        "-o",
        "Debug::NoLocking=1",
        "-o",
        "APT::Sandbox::User=root",
    ]


def prepare_apt_root(workdir: Path) -> None:
    """Create the private apt tree with the trixie source pinned to the Debian archive keyring."""
    for sub in ("sources.list.d", "state/lists/partial", "cache/archives/partial"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "sources.list").write_text(TRIXIE_SOURCE + "\n")
    (workdir / "status").touch()


def ubuntu_keyring(layout: Layout) -> Path:
    """Return a verified Ubuntu archive keyring, fetching it once through apt's signature chain."""
    target = layout.keyrings / UBUNTU_KEYRING_NAME
    if target.exists():
        return target
    layout.keyrings.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=layout.keyrings) as tmp:
        work = Path(tmp)
        prepare_apt_root(work)
        opts = apt_options(work)
        progress.step("fetching ubuntu-keyring from Debian trixie (apt verifies it against the Debian archive key)")
        subprocess.run(["apt-get", *opts, "-qq", "update"], check=True)
        subprocess.run(["apt-get", *opts, "-qq", "download", "ubuntu-keyring"], check=True, cwd=work)
        (deb,) = work.glob("ubuntu-keyring_*.deb")
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        shutil.copyfile(work / "x" / "usr/share/keyrings" / UBUNTU_KEYRING_NAME, target)
    return target


def host_keyring(dist: Dist, layout: Layout) -> Path:
    """The keyring mmdebstrap verifies the distribution's Release files with."""
    return DEBIAN_KEYRING if dist.family == "debian" else ubuntu_keyring(layout)
