"""lab.wheel's pure decisions: which guests a controller-built Meinheld wheel fits, and which interpreter builds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import dists, wheel
from lab.paths import Layout


@pytest.mark.parametrize(
    ("name", "python"), [("debian12", "3.11"), ("debian13", "3.13"), ("ubuntu2404", "3.12"), ("ubuntu2204", "3.10")]
)
def test_every_dist_names_its_python_and_glibc(name: str, python: str) -> None:
    dist = dists.get(name)
    assert dist.python == python
    assert wheel.version_tuple(dist.glibc) >= (2, 35)


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


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """for_dist builds roots only as root; the unit tests stand in for it."""
    monkeypatch.setattr(wheel.os, "geteuid", lambda: 0)


def _no_build(*args: object, **kwargs: object) -> object:
    raise AssertionError("nothing may be built")


def test_a_cached_wheel_is_reused_without_building(
    as_root: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    dist = dists.get("debian13")
    version = wheel.build.local_version(wheel.build.read_series())
    out_dir = tmp_path / "lab" / f"debian13-{version}"
    out_dir.mkdir(parents=True)
    whl = out_dir / f"meinheld-{version}-cp313-cp313-linux_x86_64.whl"
    whl.write_bytes(b"")
    monkeypatch.setattr(wheel.roots, "build", _no_build)
    monkeypatch.setattr(wheel.subprocess, "run", _no_build)
    choice = wheel.for_dist(dist, cache=tmp_path, layout=Layout(tmp_path / "lab-home"))
    assert (choice.wheel, choice.built) == (whl, False)
    assert wheel.current_link(dist, tmp_path).resolve() == out_dir.resolve()


@pytest.mark.parametrize("name", list(dists.DISTS))
def test_every_guest_gets_a_wheel_built_in_its_own_root(
    as_root: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    """Ubuntu 22.04 included: no guest is left to compile (before, an older glibc than the controller's got none)."""
    dist = dists.get(name)
    root = tmp_path / "roots" / name
    monkeypatch.setattr(wheel.roots, "build", lambda d, layout: root if d == dist else _no_build())
    runs: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> None:
        runs.append(cmd)
        out_dir = Path(cmd[6].split(" --out ")[1].split()[0])  # what build_command passes to meinheld_build
        out_dir.mkdir(parents=True)
        tag = "cp" + dist.python.replace(".", "")
        (
            out_dir / f"meinheld-{wheel.build.local_version(wheel.build.read_series())}-{tag}-{tag}-linux_x86_64.whl"
        ).touch()

    monkeypatch.setattr(wheel.subprocess, "run", fake_run)
    choice = wheel.for_dist(dist, cache=tmp_path, layout=Layout(tmp_path / "lab-home"))
    assert choice.built and choice.wheel is not None and choice.wheel.exists()
    assert runs == [wheel.build_command(root, choice.wheel.parent, tmp_path)]
    assert f"exec chroot {root} " in runs[0][6]
    assert wheel.current_link(dist, tmp_path).resolve() == choice.wheel.parent.resolve()


def test_without_root_the_guest_builds_and_nothing_is_built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(wheel.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(wheel.roots, "build", _no_build)
    choice = wheel.for_dist(dists.get("debian12"), cache=tmp_path, layout=Layout(tmp_path / "lab-home"))
    assert choice.wheel is None and "needs root" in choice.reason
    assert not list(tmp_path.iterdir())


def test_build_command_runs_the_builder_with_the_roots_python(tmp_path: Path) -> None:
    cmd = wheel.build_command(Path("/r"), tmp_path / "out", tmp_path)
    script = cmd[6]
    assert script.endswith(
        f"python3 {wheel.BUILDER} --out {tmp_path / 'out'} --download-dir {tmp_path / 'downloads'}"
        f" --constraint {wheel.SERVER_REQUIREMENTS}"
    )


def test_point_current_replaces_the_link_relative(tmp_path: Path) -> None:
    link = tmp_path / "debian12-current"
    for name in ("debian12-1.0.2+patched.gold", "debian12-1.0.2+patched.gnew"):
        (tmp_path / name).mkdir()
        wheel.point_current(link, tmp_path / name)
        assert link.readlink() == Path(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "debian12-1.0.2+patched.gnew",
        "debian12-1.0.2+patched.gold",
        "debian12-current",
    ]
