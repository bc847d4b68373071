"""The distributions the lab can build, and what goes into each image.

One table, so the image recipe, the cache key and the docs agree on mirrors, suites and packages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
UBUNTU_KEYRING_NAME = "ubuntu-archive-keyring.gpg"

# What every image needs to be a realistic, Ansible-managed systemd host: an init, SSH, an interpreter for
# Ansible (python3-apt so the apt module need not install it on each converge), CA handling for PyPI, and the
# tools the verify suites and `make demo` read the state with (ps, ip, curl). sudo: playbooks use `become`, as on
# any cloud image. e2fsprogs: fsck of the root disk (and jammy's initramfs hook copies dumpe2fs).
COMMON_PACKAGES = (
    "ca-certificates",
    "curl",
    "dbus",
    "e2fsprogs",
    "iproute2",
    "openssh-server",
    "procps",
    "python3",
    "python3-apt",
    "sudo",
    "systemd-sysv",
    "udev",
)


@dataclass(frozen=True)
class Dist:
    """A distribution release the lab builds images of."""

    name: str
    family: str  # "debian" or "ubuntu"
    suite: str
    mirror: str
    security_mirror: str
    components: tuple[str, ...]
    extra_packages: tuple[str, ...]
    # The release's python3 (minor) and glibc, for the docs and the Meinheld tier's minor -> distribution map; the
    # wheel for its guests is built in the release's own root (lab/roots.py), so both match. Not in any cache key.
    python: str = ""
    glibc: str = ""

    @property
    def packages(self) -> tuple[str, ...]:
        """The full, sorted package list: it is part of the image's cache key."""
        return tuple(sorted({*COMMON_PACKAGES, *self.extra_packages}))

    @property
    def keyring_in_guest(self) -> str:
        """Path of the archive keyring inside the guest (installed by apt's dependency on the keyring package)."""
        name = DEBIAN_KEYRING.name if self.family == "debian" else UBUNTU_KEYRING_NAME
        return f"/usr/share/keyrings/{name}"

    def sources(self) -> list[tuple[str, str]]:
        """(mirror, suite) pairs: the release, its updates and its security suite, so images start patched."""
        return [
            (self.mirror, self.suite),
            (self.mirror, f"{self.suite}-updates"),
            (self.security_mirror, f"{self.suite}-security"),
        ]

    def source_lines(self) -> list[str]:
        """One-line apt sources, each pinned to the archive keyring with signed-by (never trusted=yes)."""
        comps = " ".join(self.components)
        return [f"deb [signed-by={self.keyring_in_guest}] {m} {s} {comps}" for m, s in self.sources()]


DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_SECURITY = "http://deb.debian.org/debian-security"
UBUNTU_MIRROR = "http://archive.ubuntu.com/ubuntu"
# The components of a standard Ubuntu server install: python3-venv, which the interpreter role installs, is in universe.
UBUNTU_COMPONENTS = ("main", "restricted", "universe", "multiverse")

DISTS: dict[str, Dist] = {
    d.name: d
    for d in (
        Dist(
            "debian12",
            "debian",
            "bookworm",
            DEBIAN_MIRROR,
            DEBIAN_SECURITY,
            ("main",),
            ("linux-image-cloud-amd64",),
            "3.11",
            "2.36",
        ),
        Dist(
            "debian13",
            "debian",
            "trixie",
            DEBIAN_MIRROR,
            DEBIAN_SECURITY,
            ("main",),
            ("linux-image-cloud-amd64",),
            "3.13",
            "2.41",
        ),
        # Ubuntu's kernel packages need initramfs-tools named explicitly with --variant=apt.
        Dist(
            "ubuntu2404",
            "ubuntu",
            "noble",
            UBUNTU_MIRROR,
            UBUNTU_MIRROR,
            UBUNTU_COMPONENTS,
            ("initramfs-tools", "linux-image-virtual"),
            "3.12",
            "2.39",
        ),
        Dist(
            "ubuntu2204",
            "ubuntu",
            "jammy",
            UBUNTU_MIRROR,
            UBUNTU_MIRROR,
            UBUNTU_COMPONENTS,
            ("initramfs-tools", "linux-image-virtual"),
            "3.10",
            "2.35",
        ),
    )
}


def get(name: str) -> Dist:
    """Look a distribution up by its lab name, with an error that lists the valid ones."""
    try:
        return DISTS[name]
    except KeyError:
        raise ValueError(f"unknown distribution {name!r}; choose one of {', '.join(DISTS)}") from None
