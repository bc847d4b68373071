"""The collection as users get it: built into a tarball, installed outside the repository, used by FQCN."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
GALAXY = yaml.safe_load((REPO / "galaxy.yml").read_text())
FQCN = f"{GALAXY['namespace']}.{GALAXY['name']}"
# The ten-line playbook of the README's quick start, as a user writes it in a directory of their own.
USER_PLAYBOOK = f"""\
- name: Serve my app with Gunicorn and Meinheld
  hosts: all
  become: true
  roles:
    - role: {FQCN}.interpreter
    - role: {FQCN}.server
    - role: {FQCN}.app
"""


def run(argv: list[str], cwd: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a tool the way a user's shell would: no ANSIBLE_* of ours (no ansible.cfg, no roles_path of this repo)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run(
        argv,
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def build(out: Path) -> Path:
    """`ansible-galaxy collection build` of this checkout into out; the tarball's path."""
    result = run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(REPO)], out)
    assert result.returncode == 0, result.stdout + result.stderr
    [built] = out.glob("*.tar.gz")
    return built


def install(tarball: Path, collections: Path) -> Path:
    """`ansible-galaxy collection install -p collections TARBALL`, as a user installs it; the collections path."""
    argv = [str(BIN / "ansible-galaxy"), "collection", "install", "--force", "-p", str(collections), str(tarball)]
    result = run(argv, tarball.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return collections
