"""The venvs the stacks run from, built once under .cache/bench/ and keyed by everything that goes into them.

- suite: the runtime pins (roles/server/files/requirements.txt), the example app's pins, and the patched Meinheld wheel
  from `make meinheld-wheel` when meinheld_build/ exists; until it does, stock Meinheld, and the results say so.
- stock: the same pins with Meinheld 1.0.2 as published (`--no-deps`: its greenlet<0.5 pin does not build on 3.11).
- peers: the same pins plus bench/requirements.txt (uWSGI, bjoern, granian, matplotlib for the chart, py-spy).
A change of any pin, of the interpreter or of the Meinheld patches gives a new key, so a stale venv is never reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from bench import paths

STOCK_MEINHELD = "meinheld==1.0.2"
VENVS = ("suite", "stock", "peers")
_SKIP_PARTS = {"__pycache__", "build", "dist", ".pytest_cache"}


def base_python() -> Path:
    """The interpreter behind the running one (the tooling venv's base): what the stacks' venvs are made from."""
    return Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def tree_digest(root: Path) -> str:
    """Digest of a source tree's files (names and contents), skipping build leftovers; "absent" when missing."""
    if not root.is_dir():
        return "absent"
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if _SKIP_PARTS.intersection(relative.parts) or path.suffix == ".whl" or ".egg-info" in str(relative):
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def key(name: str, python_version: str, files: list[Path], extra: str = "") -> str:
    """A short digest of a venv's inputs: its name, the interpreter version, its requirement files, extra text."""
    digest = hashlib.sha256(f"{name}\0{python_version}\0{extra}".encode())
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _pip(python: Path, *args: str) -> None:
    """Install into the venv, never from pip's wheel cache.

    A cached uWSGI wheel built by another CPython 3.11 (a pyenv one, say) links that interpreter's libpython by its
    runpath and then fails to import the venv's stdlib.
    """
    argv = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-cache-dir", *args]
    subprocess.run(argv, check=True)


def _has_make_target(target: str) -> bool:
    """True when the repo's Makefile knows `target` (`make -n` lists its recipe without running it)."""
    probe = ["make", "-C", str(paths.REPO), "-n", target, "PYTHON=python3", "OUT=/nonexistent"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def _meinheld_source() -> str:
    """What the suite venv's Meinheld is built from: the patch tree's digest, or "stock" while there is no build."""
    if paths.MEINHELD_BUILD.is_dir() and _has_make_target("meinheld-wheel"):
        return "patched " + tree_digest(paths.MEINHELD_BUILD)
    return "stock"


def _meinheld_wheel(out: Path) -> Path | None:
    """Build the patched wheel with `make meinheld-wheel`; None while meinheld_build/ or its target is missing."""
    if not paths.MEINHELD_BUILD.is_dir() or not _has_make_target("meinheld-wheel"):
        return None
    wheels = sorted(out.glob("meinheld-*.whl"))
    if not wheels:
        out.mkdir(parents=True, exist_ok=True)
        command = ["make", "-C", str(paths.REPO), "--no-print-directory", "meinheld-wheel"]
        subprocess.run([*command, f"PYTHON={base_python()}", f"OUT={out}"], check=True, stdout=sys.stderr)
        wheels = sorted(out.glob("meinheld-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"make meinheld-wheel left {len(wheels)} wheels in {out}, expected exactly one")
    return wheels[0]


def ensure(name: str, cache: Path = paths.CACHE) -> Path:
    """Return the interpreter of venv `name`, building it on first use; its `meinheld` marker says which build."""
    version = ".".join(map(str, sys.version_info[:3]))
    pins = [paths.SERVER_REQUIREMENTS, paths.APP_REQUIREMENTS]
    files = [*pins, paths.BENCH_REQUIREMENTS] if name == "peers" else pins
    extra = {"suite": _meinheld_source(), "stock": STOCK_MEINHELD}.get(name, "")
    venv = cache / f"venv-{name}-{key(name, version, files, extra)}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    print(f"bench: building the {name} venv in {venv}", file=sys.stderr, flush=True)
    subprocess.run([str(base_python()), "-m", "venv", "--clear", str(venv)], check=True)
    # The server stack's lock carries hashes, which turn on pip's hash checking for every requirement of a run: it is
    # installed on its own, as the app role does, and the unhashed pins after it.
    _pip(python, "--require-hashes", "-r", str(paths.SERVER_REQUIREMENTS))
    _pip(python, *(arg for path in files if path != paths.SERVER_REQUIREMENTS for arg in ("-r", str(path))))
    meinheld = "none"
    if name == "suite":
        wheel = _meinheld_wheel(venv.with_name(venv.name + "-wheel"))
        if wheel is None:
            print("bench: no `make meinheld-wheel` yet: the suite venv gets stock Meinheld", file=sys.stderr)
            _pip(python, "--no-deps", STOCK_MEINHELD)
            meinheld = f"stock {STOCK_MEINHELD} (patched build not available)"
        else:
            _pip(python, "--no-deps", str(wheel))
            meinheld = f"patched {wheel.name}"
    elif name == "stock":
        _pip(python, "--no-deps", STOCK_MEINHELD)
        meinheld = f"stock {STOCK_MEINHELD}"
    (venv / "meinheld").write_text(meinheld + "\n")
    (venv / ".complete").touch()
    return python


def describe(python: Path) -> dict[str, str]:
    """Versions of the servers and frameworks a venv holds, and which Meinheld build it carries."""
    names = ["python", "gunicorn", "meinheld", "greenlet", "flask", "uwsgi", "bjoern", "granian"]
    code = (
        "import json, platform, importlib.metadata as m\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        f"out = {{n: v(n) for n in {names[1:]!r}}}\n"
        "out['python'] = platform.python_version()\n"
        "print(json.dumps({k: x for k, x in out.items() if x}))"
    )
    found = json.loads(subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout)
    marker = python.parent.parent / "meinheld"
    if marker.exists() and marker.read_text().strip() != "none":
        found["meinheld_build"] = marker.read_text().strip()
    return found
