"""lab.wheel's pure decisions: which guests a controller-built Meinheld wheel fits, and which interpreter builds it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lab import dists, wheel


@pytest.mark.parametrize(
    ("host", "guest", "fits"),
    [
        ("2.36", "2.36", True),  # Debian 12 on Debian 12
        ("2.36", "2.41", True),  # Debian 13: newer glibc runs older-built code
        ("2.36", "2.39", True),  # Ubuntu 24.04
        ("2.36", "2.35", False),  # Ubuntu 22.04: older than the build host
        ("2.4", "2.36", True),  # numeric, not string, comparison ("2.4" > "2.36" as strings)
        ("", "2.36", False),  # not glibc at all
    ],
)
def test_glibc_problem(host: str, guest: str, fits: bool) -> None:
    assert (wheel.glibc_problem(host, guest) == "") is fits


@pytest.mark.parametrize(
    ("name", "python"), [("debian12", "3.11"), ("debian13", "3.13"), ("ubuntu2404", "3.12"), ("ubuntu2204", "3.10")]
)
def test_every_dist_names_its_python_and_glibc(name: str, python: str) -> None:
    dist = dists.get(name)
    assert dist.python == python
    assert wheel.version_tuple(dist.glibc) >= (2, 35)


def _fake_pyenv(root: Path, versions: list[str]) -> None:
    for version in versions:
        binary = root / "versions" / version / "bin" / "python3"
        binary.parent.mkdir(parents=True)
        binary.write_text("")


@pytest.mark.parametrize(
    ("versions", "minor", "expected"),
    [
        (["3.12.1", "3.12.10", "3.12.9"], "3.12", "3.12.10"),  # newest patch release, compared as numbers
        (["3.1.5", "3.13.0"], "3.1", "3.1.5"),  # 3.13 is not a 3.1
        (["3.13.0-dev", "3.13.0"], "3.13", "3.13.0"),  # only plain releases
        (["3.11.7"], "3.10", None),
    ],
)
def test_find_python_in_pyenv(tmp_path: Path, versions: list[str], minor: str, expected: str | None) -> None:
    _fake_pyenv(tmp_path, versions)
    found = wheel.find_python(minor, system=tmp_path / "no-system-python", pyenv_root=tmp_path)
    assert (found.parts[-3] if found else None) == expected


def test_find_python_prefers_the_system_interpreter_of_that_minor(tmp_path: Path) -> None:
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    _fake_pyenv(tmp_path, [f"{minor}.99"])
    assert wheel.find_python(minor, system=Path(sys.executable), pyenv_root=tmp_path) == Path(sys.executable)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            ["meinheld-1.0.2+patched.gabc-cp311-cp311-linux_x86_64.whl"],
            "meinheld-1.0.2+patched.gabc-cp311-cp311-linux_x86_64.whl",
        ),
        (["meinheld-1.0.2+patched.gold-cp311-cp311-linux_x86_64.whl"], None),  # another patch series
        (["meinheld-1.0.2+patched.gabc-cp312-cp312-linux_x86_64.whl"], None),  # another Python
        ([], None),
    ],
)
def test_cached_wheel_matches_version_and_python(tmp_path: Path, files: list[str], expected: str | None) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"")
    found = wheel.cached(tmp_path, "1.0.2+patched.gabc", "3.11")
    assert (found.name if found else None) == expected


def test_a_guest_with_an_older_glibc_gets_no_wheel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(wheel, "host_glibc", lambda: "2.36")
    choice = wheel.for_dist(dists.get("ubuntu2204"), cache=tmp_path)
    assert choice.wheel is None and "newer than the guest's 2.35" in choice.reason
    assert not list(tmp_path.iterdir())  # nothing built


def test_a_cached_wheel_is_reused_without_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dist = dists.get("debian13")
    monkeypatch.setattr(wheel, "host_glibc", lambda: "2.36")
    monkeypatch.setattr(wheel, "find_python", lambda minor: Path("/py") / minor)
    version = wheel.build.local_version(wheel.build.read_series())
    (tmp_path / "lab" / f"debian13-{version}").mkdir(parents=True)
    whl = tmp_path / "lab" / f"debian13-{version}" / f"meinheld-{version}-cp313-cp313-linux_x86_64.whl"
    whl.write_bytes(b"")

    def no_build(*args: object, **kwargs: object) -> Path:
        raise AssertionError("a cached wheel must not be rebuilt")

    monkeypatch.setattr(wheel.build, "build_wheel", no_build)
    choice = wheel.for_dist(dist, cache=tmp_path)
    assert (choice.wheel, choice.built) == (whl, False)
