"""Git and pip sources for the lifecycle tests, made on the controller from the example app with its own greeting.

The host under test may not reach the controller over the network (a lab VM sees it only through QEMU's user
networking), so each artifact is one file the test ships to the host: a tarball of a bare repository, served to the
app role as a file:// git URL, and a pure-Python wheel installed through a `NAME @ file://` requirement. The wheel is
zipped here, byte for byte as the wheel format asks, so making it needs neither network nor a build backend.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tests.verify.conftest import EXAMPLE_DIR, HELLO

PACKAGE = "greeter"
VERSION = "1.0"
WHEEL = f"{PACKAGE}-{VERSION}-py3-none-any.whl"  # the file name pip reads the name, version and tags from


@dataclass(frozen=True)
class GitSource:
    """A bare repository packed as a tarball; `commit` is what `tag` points at."""

    tarball: Path
    repo_name: str
    tag: str
    commit: str


def _greeting_app(greeting: str) -> str:
    """The example app's main.py answering another greeting, so each source shows which one serves."""
    return (EXAMPLE_DIR / "main.py").read_text().replace(f'"{HELLO}"', f'"{greeting}"')


def _git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=verify", "-c", "user.email=verify@localhost", "-c", "init.defaultBranch=main"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def git_source(workdir: Path, greeting: str, tag: str = "v1") -> GitSource:
    """A repository of the example app with `greeting`, tagged `tag`, then a later commit the tag must not serve."""
    work = workdir / "work"
    work.mkdir(parents=True)
    _git(work, "init", "-q")
    (work / "main.py").write_text(_greeting_app(greeting))
    (work / "requirements.txt").write_text((EXAMPLE_DIR / "requirements.txt").read_text())
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "greeter")
    _git(work, "tag", tag)
    commit = _git(work, "rev-parse", "HEAD")
    (work / "main.py").write_text(_greeting_app(f"{greeting}, untagged"))
    _git(work, "commit", "-q", "-am", "after the tag")
    repo_name = f"{PACKAGE}.git"
    _git(workdir, "clone", "-q", "--bare", str(work), repo_name)
    tarball = workdir / f"{repo_name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(workdir / repo_name, arcname=repo_name)
    return GitSource(tarball, repo_name, tag, commit)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel(workdir: Path, greeting: str) -> Path:
    """A wheel of the package `greeter` whose `greeter.main:app` answers `greeting`; it requires the example's Flask."""
    flask_pin = (EXAMPLE_DIR / "requirements.txt").read_text().split()[0]
    dist_info = f"{PACKAGE}-{VERSION}.dist-info"
    files = {
        f"{PACKAGE}/__init__.py": "",
        f"{PACKAGE}/main.py": _greeting_app(greeting),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\nRequires-Dist: {flask_pin}\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: tests.verify.sources\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [f"{name},{_record_hash(text.encode())},{len(text.encode())}" for name, text in files.items()]
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    path = workdir / WHEEL
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path
