"""Where the lab keeps its files.

Everything lives under one directory (``.cache/lab`` of the checkout unless LAB_HOME says otherwise), so
``make clean`` removes it and two checkouts never share VMs by accident.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Layout:
    """The lab's directory tree, rooted at ``root``; pure path arithmetic so tests can use a tmp dir."""

    root: Path

    @classmethod
    def default(cls) -> Layout:
        """LAB_HOME when set (tests, parallel checkouts), else the checkout's ``.cache/lab``."""
        return cls(Path(os.environ.get("LAB_HOME", REPO_ROOT / ".cache" / "lab")).resolve())

    @property
    def images(self) -> Path:
        """One sub-directory per built image, named ``DIST-KEY``."""
        return self.root / "images"

    @property
    def vms(self) -> Path:
        """One sub-directory per VM: overlay, serial log, state, inventory."""
        return self.root / "vms"

    @property
    def keyrings(self) -> Path:
        """Archive keyrings the host does not carry (Ubuntu's), each verified before it lands here."""
        return self.root / "keyrings"

    @property
    def ssh_key(self) -> Path:
        """The lab's private SSH key; its public half is baked into every image for root."""
        return self.root / "id_ed25519"

    @property
    def lock(self) -> Path:
        """Serialises port allocation and image builds between concurrent lab commands."""
        return self.root / "lock"

    def vm_dir(self, name: str) -> Path:
        """The state directory of VM ``name``."""
        return self.vms / name
