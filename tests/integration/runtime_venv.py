"""A venv with the server stack as the roles install it (pinned Gunicorn + greenlet + Meinheld, Flask), built once.

It is cached under .cache/integration/ keyed by the pins, so a rerun costs nothing and a pin change rebuilds it.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

SERVER_REQUIREMENTS = REPO / "roles" / "server" / "files" / "requirements.txt"
APP_REQUIREMENTS = REPO / "example_app" / "requirements.txt"
# Stock Meinheld, installed without its greenlet<0.5 pin, until the patched build replaces it.
MEINHELD = "meinheld==1.0.2"


def _key() -> str:
    digest = hashlib.sha256(f"{sys.version_info[:2]}{MEINHELD}".encode())
    for pins in (SERVER_REQUIREMENTS, APP_REQUIREMENTS):
        digest.update(pins.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def runtime_python() -> Path:
    """Return the runtime venv's interpreter, building the venv on first use."""
    venv = REPO / ".cache" / "integration" / f"venv-{_key()}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(SERVER_REQUIREMENTS), "-r", str(APP_REQUIREMENTS)], check=True)
        subprocess.run([*pip, "--no-deps", MEINHELD], check=True)
        (venv / ".complete").touch()
    return python
