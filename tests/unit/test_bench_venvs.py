"""bench/venvs.py: the cache keys that decide when a stack's venv is rebuilt."""

from __future__ import annotations

from pathlib import Path

from bench import venvs


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
