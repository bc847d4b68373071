"""The venvs the stacks run from, built once under .cache/bench/ and keyed by everything that goes into them.

- suite: the runtime pins (roles/server/files/requirements.txt), the example app's pins, and the patched Meinheld wheel
  from `make meinheld-wheel` when meinheld_build/ exists; until it does, stock Meinheld, and the results say so.
- stock: the same pins with Meinheld 1.0.2 as published (`--no-deps`: its greenlet<0.5 pin does not build on 3.11).
- peers: the same pins plus bench/requirements.txt (uWSGI, bjoern, granian, matplotlib for the chart, py-spy).
- suite-baseline (`run --baseline PATCH`): the suite's pins with a Meinheld wheel built from the patch series cut after
  PATCH, keyed by that truncated series (and build.py), so an earlier build of our own wheel runs beside today's.
A change of any pin, of the interpreter or of the Meinheld patches gives a new key, so a stale venv is never reused.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import paths
from meinheld_build import build as meinheld

STOCK_MEINHELD = "meinheld==1.0.2"
VENVS = ("suite", "stock", "peers")
SUITE_BASELINE = "suite-baseline"
MEINHELD_DOWNLOADS = paths.REPO / ".cache" / "meinheld" / "downloads"  # where `make meinheld-wheel` keeps the sdist
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


def resolve_patch(patch_dir: Path, last: str) -> Path:
    """The patch of patch_dir's series that `last` names: its file name, with or without .patch, or its number.

    "0017", "17", "0017-hold-at-most-16-requests-per-batch" and the full file name all name the same patch; a value
    that names none of the series (or more than one) is an error that says which value and what the series holds.
    """
    series = meinheld.read_series(patch_dir)
    wanted = last.strip()
    number = int(wanted) if wanted.isdigit() else None
    found = [
        patch
        for patch in series
        if wanted in (patch.name, patch.name.removesuffix(".patch"))
        or (number is not None and (m := re.match(r"\d+", patch.name)) is not None and int(m.group()) == number)
    ]
    if len(found) != 1:
        why = "names no patch" if not found else f"names {len(found)} patches"
        raise ValueError(
            f"--baseline {last!r} {why} of {patch_dir / 'series'} "
            f"(it holds {series[0].name} ... {series[-1].name}; give a number such as 17 or a file name)"
        )
    return found[0]


def truncate_series(patch_dir: Path, last: str, dest: Path) -> list[Path]:
    """Copy patch_dir to dest with its series cut after the patch `last` names; the copy's patches, in order.

    The copy holds only the patches it applies, so tree_digest(dest) is the truncated series' content.
    """
    end = resolve_patch(patch_dir, last)
    kept = meinheld.read_series(patch_dir)
    kept = kept[: kept.index(end) + 1]
    dest.mkdir(parents=True, exist_ok=True)
    for patch in kept:
        shutil.copy2(patch, dest / patch.name)
    (dest / "series").write_text(
        f"# the series cut after {end.name}\n" + "".join(f"{p.name}\n" for p in kept), encoding="utf-8"
    )
    return meinheld.read_series(dest)


def _build_venv(venv: Path, files: list[Path], install_meinheld: Callable[[Path], str]) -> Path:
    """Create venv with the server lock and the other pins; install_meinheld(python) installs it, returns the marker."""
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    print(f"bench: building the {venv.name} venv in {venv}", file=sys.stderr, flush=True)
    subprocess.run([str(base_python()), "-m", "venv", "--clear", str(venv)], check=True)
    # The server stack's lock carries hashes, which turn on pip's hash checking for every requirement of a run: it is
    # installed on its own, as the app role does, and the unhashed pins after it.
    _pip(python, "--require-hashes", "-r", str(paths.SERVER_REQUIREMENTS))
    _pip(python, *(arg for path in files if path != paths.SERVER_REQUIREMENTS for arg in ("-r", str(path))))
    (venv / "meinheld").write_text(install_meinheld(python) + "\n")
    (venv / ".complete").touch()
    return python


def ensure_baseline(last: str, cache: Path = paths.CACHE, patch_dir: Path = meinheld.PATCH_DIR) -> Path:
    """The interpreter of the suite's venv with Meinheld built from the series cut after patch `last`.

    Identical to the suite venv (same pins, same build as `make meinheld-wheel`: the server lock as the build's
    constraint) but for the series; keyed by the truncated series and build.py, so a re-run reuses it.
    """
    version = ".".join(map(str, sys.version_info[:3]))
    pins = [paths.SERVER_REQUIREMENTS, paths.APP_REQUIREMENTS]
    with tempfile.TemporaryDirectory(prefix="bench-series-") as tmp:
        series_dir = Path(tmp) / "patches"
        patches = truncate_series(patch_dir, last, series_dir)
        build_py = hashlib.sha256(Path(meinheld.__file__).read_bytes()).hexdigest()
        extra = f"patched {tree_digest(series_dir)} build.py {build_py}"
        venv = cache / f"venv-{SUITE_BASELINE}-{key(SUITE_BASELINE, version, pins, extra)}"

        def install(python: Path) -> str:
            print(f"bench: building Meinheld from {len(patches)} patches, up to {patches[-1].name}", file=sys.stderr)
            try:
                wheel = meinheld.build_wheel(
                    str(base_python()),
                    venv.with_name(venv.name + "-wheel"),
                    download_dir=MEINHELD_DOWNLOADS,
                    constraint=paths.SERVER_REQUIREMENTS,
                    patch_dir=series_dir,
                )
            except meinheld.BuildError as error:
                raise RuntimeError(f"the Meinheld wheel up to {patches[-1].name} did not build: {error}") from error
            _pip(python, "--no-deps", str(wheel))
            return f"patched {wheel.name} (series up to {patches[-1].name})"

        return _build_venv(venv, pins, install)


def ensure(name: str, cache: Path = paths.CACHE) -> Path:
    """Return the interpreter of venv `name`, building it on first use; its `meinheld` marker says which build."""
    version = ".".join(map(str, sys.version_info[:3]))
    pins = [paths.SERVER_REQUIREMENTS, paths.APP_REQUIREMENTS]
    files = [*pins, paths.BENCH_REQUIREMENTS] if name == "peers" else pins
    extra = {"suite": _meinheld_source(), "stock": STOCK_MEINHELD}.get(name, "")
    venv = cache / f"venv-{name}-{key(name, version, files, extra)}"

    def install(python: Path) -> str:
        if name == "suite":
            wheel = _meinheld_wheel(venv.with_name(venv.name + "-wheel"))
            if wheel is None:
                print("bench: no `make meinheld-wheel` yet: the suite venv gets stock Meinheld", file=sys.stderr)
                _pip(python, "--no-deps", STOCK_MEINHELD)
                return f"stock {STOCK_MEINHELD} (patched build not available)"
            _pip(python, "--no-deps", str(wheel))
            return f"patched {wheel.name}"
        if name == "stock":
            _pip(python, "--no-deps", STOCK_MEINHELD)
            return f"stock {STOCK_MEINHELD}"
        return "none"

    return _build_venv(venv, files, install)


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
