"""Fixtures of the Meinheld tier: a wheel per interpreter (built once, cached) installed in a fresh venv per session.

Targets are (kind, Python minor): "patched" is this repo's build (meinheld_build), "stock" is the published 1.0.2
built from the same verified sdist without patches and installed --no-deps next to greenlet 3, the way people run it.
Each minor is the python3 a supported distribution ships (lab/dists.py: Ubuntu 22.04 3.10, Debian 12 3.11,
Ubuntu 24.04 3.12, Debian 13 3.13), run in that distribution's build root (lab/roots.py, built from its archives):
what users run, and nothing the README does not install. The patched wheels are the lab's (lab/wheel.py), the very
files the guests get; stock wheels are cached under .cache/meinheld/wheels/, keyed by the dist and its interpreter's
full version. Venvs are fresh for every session, created inside the root (under /tmp, which the root shares).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import dists, roots, wheel
from lab.dists import Dist
from lab.paths import Layout
from meinheld_build import build
from tests.meinheld.harness import Gunicorn

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache" / "meinheld"
SERVER_REQUIREMENTS = REPO / "roles" / "server" / "files" / "requirements.txt"
STOCK_CFLAGS = " ".join(
    f"-Wno-error={w}" for w in ("implicit-function-declaration", "int-conversion", "incompatible-pointer-types")
)


@dataclass(frozen=True)
class Stack:
    """One interpreter's venv with Gunicorn, greenlet and a Meinheld wheel installed, inside a distribution's root."""

    kind: str
    minor: str
    venv: Path
    wheel: Path
    root: Path | None = None

    @property
    def python(self) -> Path:
        """The venv's interpreter, a path inside the root (run it with ``command``)."""
        return self.venv / "bin" / "python"

    def command(self, *argv: str) -> list[str]:
        """``argv`` as a command that runs inside the stack's root (the host itself when there is none)."""
        return roots.run_command(self.root, argv) if self.root else list(argv)


def dist_of(minor: str) -> Dist:
    """The supported distribution whose python3 is CPython ``minor``; missing is a failure (the tier promises all)."""
    found = [d for d in dists.DISTS.values() if d.python == minor]
    if not found:
        pytest.fail(f"no supported distribution ships CPython {minor} (lab/dists.py)")
    return found[0]


def full_version(run: Callable[..., list[str]], python: str) -> str:
    """The interpreter's full version ('3.11.2'), ``python`` run through ``run``: part of the wheels' cache keys."""
    return subprocess.run(
        run(python, "-c", "import platform; print(platform.python_version())"),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def stock_wheel(python: str, key: str, root: Path | None = None) -> Path:
    """Build (or reuse) stock 1.0.2 as published (its own setup.py, no patches) with ``python`` (in ``root``)."""
    run = (lambda *argv: roots.run_command(root, argv)) if root else (lambda *argv: list(argv))
    out = CACHE / "wheels" / key
    existing = sorted(out.glob("meinheld-*.whl"))
    if len(existing) == 1:
        return existing[0]
    sdist = build.fetch_sdist(CACHE / "downloads")
    work = CACHE / "work" / key
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(run(python, "-m", "venv", str(work / "venv")), check=True)
    pip = [str(work / "venv" / "bin" / "python"), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(run(*pip, "install", "setuptools", "wheel"), check=True)
    # gcc 14 (Debian 13) made implicit declarations and int/pointer mix-ups errors; stock 1.0.2 has both. Building it
    # as every earlier gcc did keeps the column about how it runs (its import fails on 3.13), not about the compiler.
    env = {**os.environ, "CFLAGS": STOCK_CFLAGS}
    wheel_cmd = run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(sdist))
    subprocess.run(wheel_cmd, check=True, env=env)
    shutil.rmtree(work, ignore_errors=True)
    (built,) = out.glob("meinheld-*.whl")
    return built


def cached_wheel(kind: str, python: Path) -> Path:
    """The wheel for an interpreter on this host (the integration tier's runtime venv), cached by its full version."""
    version = full_version(lambda *argv: list(argv), str(python))
    if kind == "stock":
        return stock_wheel(str(python), f"stock-host-{version}")
    patches = build.read_series()
    out = CACHE / "wheels" / f"patched-{version}-{build.series_hash(patches)[:16]}"
    existing = sorted(out.glob("meinheld-*.whl"))
    if len(existing) == 1:
        return existing[0]
    return build.build_wheel(str(python), out, download_dir=CACHE / "downloads", constraint=SERVER_REQUIREMENTS)


def dist_wheel(kind: str, dist: Dist) -> tuple[Path, Path]:
    """(root, wheel) for ``dist``: the lab's wheel when patched, else stock built in the same root."""
    root = roots.build(dist, Layout.default())
    if kind == "patched":
        choice = wheel.for_dist(dist)
        if choice.wheel is None:
            pytest.fail(f"no patched wheel for {dist.name}: {choice.reason}")
        return root, choice.wheel
    version = full_version(lambda *argv: roots.run_command(root, argv), "python3")
    return root, stock_wheel("python3", f"stock-{dist.name}-{version}", root)


def prepare_stack(kind: str, minor: str, venv: Path) -> Stack:
    """Root and wheel (cached) plus a fresh venv in the root with the pinned server stack and that wheel."""
    root, whl = dist_wheel(kind, dist_of(minor))
    stack = Stack(kind, minor, venv, whl, root)
    subprocess.run(stack.command("python3", "-m", "venv", str(venv)), check=True)
    pip = [str(stack.python), "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run(stack.command(*pip, "install", "-r", str(SERVER_REQUIREMENTS)), check=True)
    # stock is installed the only way it installs next to greenlet 3: without its greenlet<0.5 requirement
    subprocess.run(stack.command(*pip, "install", *(["--no-deps"] if kind == "stock" else []), str(whl)), check=True)
    return stack


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
        if os.geteuid() != 0:
            pytest.fail("the tier runs each CPython in its distribution's root (mmdebstrap, chroot): run it as root")
        build.fetch_sdist(CACHE / "downloads")  # once, before parallel builds read it
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=3)
        for kind, minor in sorted(_needed | {tuple(request.param)}):
            venv = tmp_path_factory.mktemp(f"venv-{kind}-{minor}")
            _stacks[kind, minor] = pool.submit(prepare_stack, kind, minor, venv)
        pool.shutdown(wait=False)
    return _stacks[tuple(request.param)].result()


def pytest_report_header() -> list[str]:
    """Say where the interpreters come from, so a log shows no pyenv was involved."""
    return [
        f"meinheld tier: python {sys.version.split()[0]} drives; each CPython runs in its distribution's root "
        f"({', '.join(f'{d.name} {d.python}' for d in dists.DISTS.values())})"
    ]


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[object]:
    """Start servers for the test and kill them (and their workers) afterwards, whatever happened."""
    servers: list[Gunicorn] = []

    def start(stack: object, *options: str) -> Gunicorn:
        server = Gunicorn(stack, tmp_path / f"gunicorn-{len(servers)}.log", *options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()
