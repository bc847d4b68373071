"""The lab's SSH key pair: one per lab home, baked into images for root, used by Ansible and the tests."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab import locking
from lab.paths import Layout


def ensure(layout: Layout) -> Path:
    """Create the key pair on first use and return the public key's path."""
    private = layout.ssh_key
    public = private.with_suffix(".pub")
    with locking.exclusive(layout.lock):
        if not private.exists():
            private.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab", "-f", str(private)],
                check=True,
            )
    return public
