#!/usr/bin/env python3
"""Build the patched Meinheld wheel: the published 1.0.2 sdist, checksum verified, plus this folder's patch series.

Standard library only, and self-contained with the `patches/` folder next to it, so the same file runs from the
repository (`make meinheld-wheel`) and on a target host (`python3 build.py --out DIR` with the host's interpreter).
The host needs the interpreter's venv module and headers and a C compiler (Debian: python3-venv python3-dev gcc
libc6-dev); patches are applied by the small unified-diff applier below, so neither `patch` nor `git` is needed.

The wheel is built in a throwaway venv of the target interpreter in which greenlet>=3 is installed: the extension
compiles against that greenlet's own C API header (greenlet/greenlet.h), never against a vendored copy.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

UPSTREAM_VERSION = "1.0.2"
SDIST_NAME = f"meinheld-{UPSTREAM_VERSION}.tar.gz"
SDIST_URL = (
    "https://files.pythonhosted.org/packages/a6/41/"
    f"f11e4dbfe35f251b1fe10cee5b186a4ac29de3e03fede010db40313d829e/{SDIST_NAME}"
)
# The sha256 PyPI publishes for the file above; a download that does not match is refused, never built.
SDIST_SHA256 = "008c76937ac2117cc69e032dc69cea9f85fc605de9bac1417f447c41c16a56d6"
# What the wheel must declare: greenlet 3's C API (PyGreenlet_GetParent, _ACTIVE, _STARTED) is what it compiles
# against, and nothing older may be accepted at install time.
GREENLET_REQUIREMENT = "greenlet>=3"
HERE = Path(__file__).resolve().parent
PATCH_DIR = HERE / "patches"
# The build env's setuptools and wheel, pinned with the sha256 of each of their files on PyPI: the build runs their code
# as root on a target host, so a swapped file on the index must fail the install, not run.
BUILD_REQUIREMENTS = HERE / "build-requirements.txt"
# GCC 14 (Debian 13) turns these into errors by default; making them errors on older compilers too keeps a build that
# passes here from failing on a newer target. CPPFLAGS, because setuptools appends it (CFLAGS would replace the
# interpreter's own flags, NDEBUG and -O3 included).
STRICT_CPPFLAGS = "-Werror=implicit-function-declaration -Werror=incompatible-pointer-types -Werror=int-conversion"


class BuildError(Exception):
    """A step of the build failed; the message says which and why, for the operator or the role's task output."""


# ---------------------------------------------------------------------------------------------------------------------
# checksums and the sdist


def sha256_of(path: Path) -> str:
    """Hash a file in chunks, so a large download does not have to fit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a file whose content is not the pinned one: a build must never run code nobody reviewed."""
    actual = sha256_of(path)
    if actual != expected.lower():
        raise BuildError(f"{path}: sha256 {actual} does not match the pinned {expected}; refusing to build it")


def fetch_sdist(download_dir: Path, url: str = SDIST_URL, sha256: str = SDIST_SHA256) -> Path:
    """Return a verified copy of the sdist in download_dir, downloading it only when no verified copy is there."""
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / url.rsplit("/", 1)[-1]
    if target.exists():
        try:
            verify_sha256(target, sha256)
            return target
        except BuildError:
            target.unlink()  # a truncated or foreign file from an earlier run: fetch it again
    log(f"downloading {url}")
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BuildError(f"could not download {url}: {exc}") from exc
    try:
        verify_sha256(partial, sha256)
    except BuildError:
        partial.unlink()
        raise
    partial.replace(target)
    return target


def unpack_sdist(sdist: Path, dest: Path) -> Path:
    """Unpack the sdist into dest and return its top directory, refusing members that would land outside dest."""
    with tarfile.open(sdist) as tar:
        root = dest.resolve()
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if root not in target.parents or member.issym() or member.islnk() or member.isdev():
                raise BuildError(f"{sdist}: refusing unsafe member {member.name!r}")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - interpreters without the PEP 706 backport; members were checked above
            tar.extractall(dest)
    top = dest / f"meinheld-{UPSTREAM_VERSION}"
    if not (top / "setup.py").is_file():
        raise BuildError(f"{sdist}: no meinheld-{UPSTREAM_VERSION}/setup.py inside")
    return top


# ---------------------------------------------------------------------------------------------------------------------
# the patch series: a tiny unified-diff applier (exact context, no fuzz)


@dataclass
class Hunk:
    """One @@ block: the lines it expects (context and removals) and the lines it leaves (context and additions)."""

    old_start: int
    old_lines: list[str] = field(default_factory=list)
    new_lines: list[str] = field(default_factory=list)


@dataclass
class FilePatch:
    """The hunks for one file; old_path or new_path is None when the file is created or deleted."""

    old_path: str | None
    new_path: str | None
    hunks: list[Hunk] = field(default_factory=list)


_HUNK_RE = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _strip_path(raw: str) -> str | None:
    """Turn a ---/+++ path into a relative path (git's a/ and b/ prefixes dropped); /dev/null means no file."""
    path = raw.split("\t", 1)[0].strip()
    if path == "/dev/null":
        return None
    if path.startswith(("a/", "b/")):
        path = path[2:]
    if path.startswith("/") or ".." in Path(path).parts:
        raise BuildError(f"patch names a path outside the source tree: {raw!r}")
    return path


def split_lines(text: str) -> list[str]:
    """Split after each newline only (str.splitlines also splits at form feeds, which C sources contain)."""
    lines = text.split("\n")
    result = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        result.append(lines[-1])
    return result


def _drop_newline(hunk: Hunk, last_tag: str) -> None:
    """Strip the line ending from the last line of the side(s) the previous hunk line belonged to."""
    sides = {" ": (hunk.old_lines, hunk.new_lines), "-": (hunk.old_lines,), "+": (hunk.new_lines,)}[last_tag]
    for side in sides:
        if side:
            side[-1] = side[-1].rstrip("\r\n")


def parse_patch(text: str) -> list[FilePatch]:
    """Parse a unified diff; free text before and between file sections (the patch header) is ignored."""
    lines = split_lines(text)
    patches: list[FilePatch] = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        current = FilePatch(_strip_path(lines[i][4:]), _strip_path(lines[i + 1][4:]))
        if current.old_path is None and current.new_path is None:
            raise BuildError("patch section with /dev/null on both sides")
        patches.append(current)
        i += 2
        while i < len(lines) and (match := _HUNK_RE.match(lines[i])):
            old_count = int(match.group(2)) if match.group(2) is not None else 1
            new_count = int(match.group(4)) if match.group(4) is not None else 1
            hunk = Hunk(old_start=int(match.group(1)))
            last_tag = " "
            i += 1
            while old_count > 0 or new_count > 0 or (i < len(lines) and lines[i].startswith("\\")):
                if i >= len(lines):
                    raise BuildError(f"{current.new_path or current.old_path}: hunk ends early")
                line = lines[i]
                tag, body = line[:1], line[1:]
                if line in ("\n", "\r\n"):  # an empty context line whose leading space an editor removed
                    tag, body = " ", line
                if tag == "\\":  # "\ No newline at end of file": the previous line has no newline
                    _drop_newline(hunk, last_tag)
                elif tag in " -+":
                    if tag in " -":
                        hunk.old_lines.append(body)
                        old_count -= 1
                    if tag in " +":
                        hunk.new_lines.append(body)
                        new_count -= 1
                    last_tag = tag
                else:
                    raise BuildError(f"{current.new_path or current.old_path}: unexpected line in hunk: {line!r}")
                i += 1
                if old_count < 0 or new_count < 0:
                    raise BuildError(f"{current.new_path or current.old_path}: hunk longer than its header says")
            current.hunks.append(hunk)
    if not patches:
        raise BuildError("no file sections (---/+++) found in patch")
    return patches


def _find_hunk(lines: list[str], hunk: Hunk, hint: int) -> int:
    """Where the hunk's old lines match exactly: at the stated line if possible, else the nearest offset."""
    n = len(hunk.old_lines)
    for delta in range(len(lines) + 1):
        for pos in {hint - delta, hint + delta}:
            if 0 <= pos <= len(lines) - n and lines[pos : pos + n] == hunk.old_lines:
                return pos
    return -1


def apply_file_patch(root: Path, fp: FilePatch) -> None:
    """Apply one file's hunks in the tree under root; any context that does not match aborts the build."""
    name = fp.new_path or fp.old_path
    if fp.old_path is None:
        target = root / str(fp.new_path)
        if target.exists():
            raise BuildError(f"{name}: patch creates a file that already exists")
        lines: list[str] = []
    else:
        target = root / fp.old_path
        if not target.is_file():
            raise BuildError(f"{name}: file to patch does not exist")
        with target.open(encoding="latin-1", newline="") as f:
            lines = split_lines(f.read())
    offset = 0
    for number, hunk in enumerate(fp.hunks, 1):
        hint = max(hunk.old_start - 1, 0) + offset if hunk.old_lines else max(hunk.old_start, 0) + offset
        pos = _find_hunk(lines, hunk, hint)
        if pos < 0:
            raise BuildError(f"{name}: hunk {number} (line {hunk.old_start}) does not match the source")
        lines[pos : pos + len(hunk.old_lines)] = hunk.new_lines
        offset += len(hunk.new_lines) - len(hunk.old_lines)
    if fp.new_path is None:
        if lines:
            raise BuildError(f"{name}: deletion patch leaves content behind")
        target.unlink()
        return
    dest = root / fp.new_path
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", encoding="latin-1", newline="") as f:
        f.write("".join(lines))
    if fp.old_path is not None and fp.old_path != fp.new_path:
        target.unlink()


def apply_patch(root: Path, text: str) -> list[str]:
    """Apply every file section of a patch; returns the files touched, for the build log."""
    sections = parse_patch(text)
    for fp in sections:
        apply_file_patch(root, fp)
    return [str(fp.new_path or fp.old_path) for fp in sections]


def read_series(patch_dir: Path = PATCH_DIR) -> list[Path]:
    """The patches in the order of patch_dir/series (one file name a line, # comments), each required to exist."""
    series = patch_dir / "series"
    names = [
        line.split("#", 1)[0].strip() for line in series.read_text(encoding="utf-8").splitlines() if line.split("#")[0]
    ]
    names = [n for n in names if n]
    if not names:
        raise BuildError(f"{series}: empty patch series")
    missing = [n for n in names if not (patch_dir / n).is_file()]
    if missing:
        raise BuildError(f"{series}: listed patches missing: {', '.join(missing)}")
    return [patch_dir / n for n in names]


def series_hash(patches: list[Path]) -> str:
    """A digest of the series (names, order, content): it names the wheel, so a changed patch is a new version."""
    digest = hashlib.sha256()
    for patch in patches:
        digest.update(patch.name.encode() + b"\0" + patch.read_bytes() + b"\0")
    return digest.hexdigest()


def local_version(patches: list[Path]) -> str:
    """The wheel's version: upstream's plus a local label saying it is patched and by which series.

    The hash gets a leading "g" (as in git describe) so the segment is never all digits: PEP 440 would normalise
    leading zeros away and the file name would stop matching.
    """
    return f"{UPSTREAM_VERSION}+patched.g{series_hash(patches)[:8]}"


def set_version(src: Path, version: str) -> None:
    """Write the local version into setup.py, which must carry upstream's version exactly once."""
    setup_py = src / "setup.py"
    text = setup_py.read_text(encoding="utf-8")
    old = f'version="{UPSTREAM_VERSION}"'
    if text.count(old) != 1:
        raise BuildError(f"{setup_py}: expected exactly one {old}")
    setup_py.write_text(text.replace(old, f'version="{version}"'), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------------
# wheel naming and metadata


@dataclass
class WheelInfo:
    """What the checks need from a built wheel: its name parts and its declared requirements."""

    name: str
    version: str
    tags: str
    requires: list[str]
    entry_points: str


def inspect_wheel(path: Path) -> WheelInfo:
    """Read the name and version from the file name and the requirements from the wheel's METADATA."""
    match = re.fullmatch(r"(?P<name>[^-]+)-(?P<version>[^-]+)-(?P<tags>.+)\.whl", path.name)
    if not match:
        raise BuildError(f"{path.name}: not a wheel file name")
    with zipfile.ZipFile(path) as wheel:
        dist_info = f"{match['name']}-{match['version']}.dist-info"
        try:
            metadata = wheel.read(f"{dist_info}/METADATA").decode("utf-8")
        except KeyError as exc:
            raise BuildError(f"{path.name}: no {dist_info}/METADATA") from exc
        try:
            entry_points = wheel.read(f"{dist_info}/entry_points.txt").decode("utf-8")
        except KeyError:
            entry_points = ""
    message = email.parser.Parser().parsestr(metadata)
    if message.get("Version") != match["version"]:
        raise BuildError(f"{path.name}: METADATA version {message.get('Version')} differs from the file name")
    return WheelInfo(
        match["name"], match["version"], match["tags"], message.get_all("Requires-Dist") or [], entry_points
    )


def check_wheel(path: Path, version: str) -> WheelInfo:
    """Refuse a wheel that is not ours: wrong name or version, a greenlet requirement other than >=3, no worker."""
    info = inspect_wheel(path)
    if info.name != "meinheld" or info.version != version:
        raise BuildError(f"{path.name}: expected meinheld {version}, got {info.name} {info.version}")
    greenlet = [r for r in info.requires if re.match(r"greenlet\b", r, re.IGNORECASE)]
    normalized = [re.sub(r"\s+", "", r.split(";", 1)[0]) for r in greenlet]
    if normalized != [GREENLET_REQUIREMENT]:
        raise BuildError(f"{path.name}: requires {greenlet or 'no greenlet'}, expected exactly {GREENLET_REQUIREMENT}")
    if "gunicorn_worker" not in info.entry_points:
        raise BuildError(f"{path.name}: the gunicorn_worker entry point is missing")
    return info


# ---------------------------------------------------------------------------------------------------------------------
# the build


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the wheel's path for scripts and roles to read."""
    print(f"meinheld-build: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> None:
    """Run a build step with its output in logfile; on failure show the log's tail, where compilers put the cause."""
    with logfile.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        result = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if result.returncode != 0:
        tail = "".join(logfile.read_text(errors="replace").splitlines(keepends=True)[-60:])
        raise BuildError(f"{' '.join(cmd[:4])} ... failed with {result.returncode}:\n{tail}")


def prepare_source(workdir: Path, sdist: Path, patches: list[Path]) -> tuple[Path, str]:
    """Unpack the verified sdist, apply the series in order and stamp the local version; the tree and version."""
    src = unpack_sdist(sdist, workdir)
    for patch in patches:
        with patch.open(encoding="latin-1", newline="") as f:
            touched = apply_patch(src, f.read())
        log(f"applied {patch.name} ({', '.join(touched)})")
    version = local_version(patches)
    set_version(src, version)
    return src, version


def requirement_lines(text: str) -> list[str]:
    """The logical lines of a requirements file: continuations joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def pinned_requirement(text: str, name: str) -> str | None:
    """The line of requirements `text` that pins `name` (``name==VERSION`` with its options), or None."""
    for line in requirement_lines(text):
        match = re.match(r"([A-Za-z0-9._-]+)\s*==\s*([^\s;]+)", line)
        if match and re.sub(r"[-_.]+", "-", match.group(1)).lower() == name:
            return line
    return None


def build_env_plan(
    constraint: Path | None, build_requirements: Path = BUILD_REQUIREMENTS
) -> tuple[list[str], list[str]]:
    """What fills the build env: the lines of one hash-checked requirements file, and a second, unhashed install.

    setuptools and wheel always come hash-checked. With a stack lock (the server role's requirements.txt: greenlet
    pinned with its hashes) greenlet joins them and there is no second install; a constraint without hashes pins it in
    the second install, and no constraint takes any greenlet>=3 there.
    """
    lines = requirement_lines(build_requirements.read_text())
    greenlet = pinned_requirement(constraint.read_text(), "greenlet") if constraint else None
    if greenlet is not None:
        major = re.match(r"[^=]+==\s*([0-9]+)", greenlet)
        if major is None or int(major.group(1)) < 3:
            raise BuildError(f"{constraint}: {greenlet.split()[0]} does not satisfy {GREENLET_REQUIREMENT}")
        if "--hash=" in greenlet:
            return [*lines, greenlet], []
    return lines, [GREENLET_REQUIREMENT, *(["-c", str(constraint)] if constraint else [])]


def build_wheel(
    python: str,
    out_dir: Path,
    download_dir: Path | None = None,
    sdist: Path | None = None,
    constraint: Path | None = None,
    patch_dir: Path = PATCH_DIR,
) -> Path:
    """Build the patched wheel with `python` and leave it as the only meinheld-*.whl in out_dir; returns its path."""
    patches = read_series(patch_dir)
    with tempfile.TemporaryDirectory(prefix="meinheld-build-") as tmp:
        workdir = Path(tmp)
        if sdist is not None:
            verify_sha256(sdist, SDIST_SHA256)
        else:
            sdist = fetch_sdist(download_dir or workdir / "download")
        src, version = prepare_source(workdir, sdist, patches)
        build_log = workdir / "build.log"
        venv = workdir / "venv"
        log(f"building meinheld {version} with {python}")
        _run([python, "-m", "venv", str(venv)], build_log)
        vpython = str(venv / "bin" / "python")
        pip = [vpython, "-m", "pip", "--disable-pip-version-check", "--no-input"]
        hashed, unhashed = build_env_plan(constraint)
        requirements = workdir / "build-env-requirements.txt"
        requirements.write_text("".join(f"{line}\n" for line in hashed))
        _run([*pip, "install", "--require-hashes", "-r", str(requirements)], build_log)
        if unhashed:
            _run([*pip, "install", *unhashed], build_log)
        env = dict(os.environ)
        env["CPPFLAGS"] = f"{env.get('CPPFLAGS', '')} {STRICT_CPPFLAGS}".strip()
        dist = workdir / "dist"
        _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)], build_log, env=env)
        wheels = sorted(dist.glob("meinheld-*.whl"))
        if len(wheels) != 1:
            raise BuildError(f"expected one wheel, the build produced {[w.name for w in wheels]}")
        check_wheel(wheels[0], version)
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob("meinheld-*.whl"):
            log(f"removing {stale}")
            stale.unlink()
        result = out_dir / wheels[0].name
        shutil.copy2(wheels[0], result)
    log(f"built {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line for `make meinheld-wheel` and for roles building on the target host."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, help="directory that receives the wheel (its old meinheld-*.whl go)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to build for (default: this one)")
    parser.add_argument("--sdist", type=Path, help=f"a local {SDIST_NAME} to use instead of downloading (verified)")
    parser.add_argument("--download-dir", type=Path, help="keep the verified download here and reuse it")
    parser.add_argument(
        "--constraint", type=Path, help="the stack's pins for the build env (greenlet's version, and hashes if any)"
    )
    parser.add_argument("--print-version", action="store_true", help="print the version the build would have; exit")
    args = parser.parse_args(argv)
    try:
        if args.print_version:
            print(local_version(read_series()))
            return 0
        if args.out is None:
            parser.error("--out is required")
        wheel = build_wheel(args.python, args.out, args.download_dir, args.sdist, args.constraint)
    except BuildError as exc:
        log(f"error: {exc}")
        return 1
    print(wheel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
