"""bench/venvs.py: the cache keys that decide when a stack's venv is rebuilt, and the --baseline series cut."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import venvs
from meinheld_build import build


def test_key_changes_with_a_pin(tmp_path: Path) -> None:
    pins = tmp_path / "requirements.txt"
    pins.write_text("gunicorn==1\n")
    before = venvs.key("suite", "3.11.7", [pins])
    pins.write_text("gunicorn==2\n")
    assert venvs.key("suite", "3.11.7", [pins]) != before


def test_key_changes_with_interpreter_and_meinheld_source(tmp_path: Path) -> None:
    pins = tmp_path / "requirements.txt"
    pins.write_text("x\n")
    base = venvs.key("suite", "3.11.7", [pins], "stock")
    assert venvs.key("suite", "3.12.1", [pins], "stock") != base
    assert venvs.key("suite", "3.11.7", [pins], "patched abc") != base


def test_tree_digest_follows_patches_and_ignores_build_leftovers(tmp_path: Path) -> None:
    assert venvs.tree_digest(tmp_path / "missing") == "absent"
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches" / "0001.patch").write_text("a")
    first = venvs.tree_digest(tmp_path)
    for leftover in ("build/x.o", "__pycache__/m.pyc", "dist/meinheld.whl"):
        (tmp_path / leftover).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / leftover).write_text("noise")
    assert venvs.tree_digest(tmp_path) == first
    (tmp_path / "patches" / "0001.patch").write_text("b")
    assert venvs.tree_digest(tmp_path) != first


def _series(root: Path, names: list[str]) -> Path:
    root.mkdir()
    for name in names:
        (root / name).write_text(f"patch {name}\n")
    (root / "series").write_text("# comment\n" + "".join(f"{name}\n" for name in names))
    return root


SERIES = ["0001-first.patch", "0002-second.patch", "0017-hold.patch", "0018-parser.patch"]


@pytest.mark.parametrize("last", ["0017", "17", "0017-hold", "0017-hold.patch", " 0017 "])
def test_truncate_series_cuts_after_the_named_patch(tmp_path: Path, last: str) -> None:
    patches = _series(tmp_path / "patches", SERIES)
    kept = venvs.truncate_series(patches, last, tmp_path / "copy")
    assert [p.name for p in kept] == SERIES[:3]
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == sorted([*SERIES[:3], "series"])
    assert (patches / "series").read_text().count(".patch") == 4  # the original is left alone


@pytest.mark.parametrize("last", ["0099", "99", "0003", "hold", "0017-hold.diff", "", "18-parser"])
def test_truncate_series_refuses_a_value_naming_no_patch(tmp_path: Path, last: str) -> None:
    patches = _series(tmp_path / "patches", SERIES)
    with pytest.raises(ValueError, match=re.escape(f"--baseline {last!r} names no patch")):
        venvs.truncate_series(patches, last, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_truncate_series_refuses_an_ambiguous_number(tmp_path: Path) -> None:
    patches = _series(tmp_path / "patches", ["0001-a.patch", "0001-b.patch"])
    with pytest.raises(ValueError, match="'1' names 2 patches"):
        venvs.resolve_patch(patches, "1")


def test_the_real_series_cut_after_0017_is_the_series_before_the_parser_work(tmp_path: Path) -> None:
    kept = venvs.truncate_series(build.PATCH_DIR, "0017", tmp_path / "copy")
    assert [p.name for p in kept] == [p.name for p in build.read_series()][:17]
    assert kept[-1].name == "0017-hold-at-most-16-requests-per-batch.patch"


@pytest.mark.parametrize(("first", "second", "same"), [("0017", "17", True), ("0017", "0016", False)])
def test_the_truncated_series_digest_keys_the_baseline_venv(
    tmp_path: Path, first: str, second: str, same: bool
) -> None:
    venvs.truncate_series(build.PATCH_DIR, first, tmp_path / "a")
    venvs.truncate_series(build.PATCH_DIR, second, tmp_path / "b")
    assert (venvs.tree_digest(tmp_path / "a") == venvs.tree_digest(tmp_path / "b")) is same
