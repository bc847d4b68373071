"""Fixtures of the Meinheld tier: a wheel per interpreter (built once, cached) installed in a fresh venv per session.

Targets are (kind, Python minor): "patched" is this repo's build (meinheld_build), "stock" is the published 1.0.2
built from the same verified sdist without patches and installed --no-deps next to greenlet 3, the way people run it.
Wheels are cached under .cache/meinheld/wheels/, keyed by the interpreter's full version and, for patched builds, the
patch series hash, so a rerun only builds what changed. Venvs are fresh for every session.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from meinheld_build import build

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "meinheld"
SERVER_REQUIREMENTS = REPO / "roles" / "server" / "files" / "requirements.txt"
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


@dataclass(frozen=True)
class Stack:
    """One interpreter's venv with Gunicorn, greenlet and a Meinheld wheel installed."""

    kind: str
    minor: str
    venv: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


def find_python(minor: str) -> Path:
    """The pyenv interpreter for a minor version; missing is a failure, not a skip (the tier promises all four)."""
    candidates = sorted(
        PYENV_ROOT.glob(f"versions/{minor}.*/bin/python3"),
        key=lambda p: [int(n) for n in re.findall(r"\d+", p.parts[-3])],
    )
    candidates = [p for p in candidates if re.fullmatch(rf"{re.escape(minor)}\.\d+", p.parts[-3])]
    if not candidates:
        pytest.fail(f"no CPython {minor} under {PYENV_ROOT}/versions (install it with pyenv)")
    return candidates[-1]


def full_version(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def cached_wheel(kind: str, python: Path) -> Path:
    """Build (or reuse) the wheel for this interpreter; the cache key names everything that changes the wheel."""
    version = full_version(python)
    patches = build.read_series()
    key = f"{kind}-{version}" + (f"-{build.series_hash(patches)[:16]}" if kind == "patched" else "")
    out = CACHE / "wheels" / key
    existing = sorted(out.glob("meinheld-*.whl"))
    if len(existing) == 1:
        return existing[0]
    for stale in out.parent.glob(f"{kind}-{version}*"):  # wheels of earlier patch series: never used again
        shutil.rmtree(stale, ignore_errors=True)
    downloads = CACHE / "downloads"
    if kind == "patched":
        return build.build_wheel(str(python), out, download_dir=downloads, constraint=SERVER_REQUIREMENTS)
    # stock: the same verified sdist, built as published (its own setup.py, no patches)
    sdist = build.fetch_sdist(downloads)
    work = CACHE / "work" / key
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run([str(python), "-m", "venv", str(work / "venv")], check=True)
    pip = [str(work / "venv" / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "setuptools", "wheel"], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(sdist)], check=True)
    shutil.rmtree(work, ignore_errors=True)
    (wheel,) = out.glob("meinheld-*.whl")
    return wheel


def prepare_stack(kind: str, minor: str, venv: Path) -> Stack:
    """Wheel (cached) plus a fresh venv with the pinned server stack and that wheel."""
    python = find_python(minor)
    wheel = cached_wheel(kind, python)
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-r", str(SERVER_REQUIREMENTS)], check=True)
    # stock is installed the only way it installs next to greenlet 3: without its greenlet<0.5 requirement
    subprocess.run([*pip, "install", *(["--no-deps"] if kind == "stock" else []), str(wheel)], check=True)
    return Stack(kind, minor, venv, wheel)


_needed: set[tuple[str, str]] = set()
_stacks: dict[tuple[str, str], concurrent.futures.Future[Stack]] = {}


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Note which stacks the selected tests use (after -k/-m deselection), so only those are prepared."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "stack" in params:
            _needed.add(tuple(params["stack"]))


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A fresh venv per (kind, minor) and session, with the pinned server stack and the wheel under test.

    The first use prepares every stack the session needs, three at a time: builds and pip installs wait on the
    compiler and the network in turn, so overlapping them shortens the tier by minutes on two cores.
    """
    if not _stacks:
        build.fetch_sdist(CACHE / "downloads")  # once, before parallel builds read it
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        for kind, minor in sorted(_needed | {tuple(request.param)}):
            venv = tmp_path_factory.mktemp(f"venv-{kind}-{minor}")
            _stacks[kind, minor] = pool.submit(prepare_stack, kind, minor, venv)
        pool.shutdown(wait=False)
    return _stacks[tuple(request.param)].result()


def pytest_report_header() -> list[str]:
    return [f"meinheld tier: python {sys.version.split()[0]} drives; wheels cached in {CACHE / 'wheels'}"]
