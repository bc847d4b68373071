"""A venv with the server stack as the roles install it (pinned Gunicorn + greenlet, the patched Meinheld, Flask).

It is cached under .cache/integration/ keyed by the pins and the wheel, so a rerun costs nothing and a change to either
rebuilds it. The wheel comes from the Meinheld tier's cache, built by meinheld_build as on a host.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.meinheld.conftest import cached_wheel

SERVER_REQUIREMENTS = REPO / "roles" / "server" / "files" / "requirements.txt"
APP_REQUIREMENTS = REPO / "example_app" / "requirements.txt"


def _key(wheel: Path) -> str:
    digest = hashlib.sha256(f"{sys.version_info[:2]}{wheel.name}".encode())
    for pins in (SERVER_REQUIREMENTS, APP_REQUIREMENTS):
        digest.update(pins.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def runtime_python() -> Path:
    """Return the runtime venv's interpreter, building the venv on first use."""
    wheel = cached_wheel("patched", Path(sys.executable))
    venv = REPO / ".cache" / "integration" / f"venv-{_key(wheel)}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        # As the app role does: the stack's lock hash-checked on its own, then the app's unhashed requirements.
        subprocess.run([*pip, "--require-hashes", "-r", str(SERVER_REQUIREMENTS)], check=True)
        subprocess.run([*pip, "-r", str(APP_REQUIREMENTS), str(wheel)], check=True)
        (venv / ".complete").touch()
    return python
