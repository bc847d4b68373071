"""The server stack installs hash-checked: the lock, the Meinheld wheel's line, and the Meinheld build env's pins.

`pip install --require-hashes -r stack-requirements.txt` must work on its own: every requirement of the lock pinned
with `==` and hashed (pip refuses the whole run otherwise), and the rendered stack file gives the wheel its sha256.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import jinja2
import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "roles" / "server"
LOCK = SERVER / "files" / "requirements.txt"
sys.path.insert(0, str(REPO / "meinheld_build"))
import build  # noqa: E402

SHA256 = re.compile(r"--hash=sha256:[0-9a-f]{64}$")


def _hashed(path: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} of a requirements file; fails on a line that is not `name==version --hash=...`."""
    found = {}
    for line in build.requirement_lines(path.read_text()):
        name, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][A-Za-z0-9.+!]*)", name)
        assert match, f"{path.name}: {name} is not pinned with =="
        assert options and all(SHA256.match(option) for option in options), f"{path.name}: {name} lacks sha256 hashes"
        found[match.group(1).lower()] = (match.group(2), [o.split(":", 1)[1] for o in options])
    return found


def test_the_stack_lock_pins_and_hashes_every_requirement() -> None:
    lock = _hashed(LOCK)
    assert set(lock) == {"gunicorn", "greenlet"}
    # Every file of the release: gunicorn's wheel and sdist, greenlet's sdist and one wheel per platform and CPython.
    assert len(lock["gunicorn"][1]) >= 2
    assert len(lock["greenlet"][1]) >= 20
    assert all(len(set(hashes)) == len(hashes) for _, hashes in lock.values())


def test_the_meinheld_build_env_is_pinned_with_hashes() -> None:
    pins = _hashed(build.BUILD_REQUIREMENTS)
    assert set(pins) == {"setuptools", "wheel"}


def test_the_build_env_takes_greenlet_hash_checked_from_the_lock() -> None:
    hashed, unhashed = build.build_env_plan(LOCK)
    assert unhashed == []
    names = [line.split("==")[0] for line in hashed]
    assert names == ["setuptools", "wheel", "greenlet"]
    assert all("--hash=sha256:" in line for line in hashed)


def test_an_unhashed_constraint_pins_greenlet_in_a_second_install(tmp_path: Path) -> None:
    constraint = tmp_path / "c.txt"
    constraint.write_text("gunicorn==27.0.1\ngreenlet==3.1.0  # pinned\n")
    hashed, unhashed = build.build_env_plan(constraint)
    assert [line.split("==")[0] for line in hashed] == ["setuptools", "wheel"]
    assert unhashed == ["greenlet>=3", "-c", str(constraint)]
    assert build.build_env_plan(None)[1] == ["greenlet>=3"]


def test_a_greenlet_pin_below_3_is_refused(tmp_path: Path) -> None:
    constraint = tmp_path / "c.txt"
    constraint.write_text("greenlet==2.0.2\n")
    with pytest.raises(build.BuildError, match=r"greenlet==2\.0\.2 does not satisfy greenlet>=3"):
        build.build_env_plan(constraint)


def test_the_stack_requirements_give_the_wheel_its_sha256(tmp_path: Path) -> None:
    wheel = tmp_path / "meinheld-1.0.2+patched.gabc-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"wheel bytes")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(SERVER / "templates"), undefined=jinja2.StrictUndefined)
    text = env.get_template("stack-requirements.txt.j2").render(
        server_lib_dir="/usr/local/lib/gunicorn-suite",
        server_meinheld_wheel=str(wheel),
        server_meinheld_wheel_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(),
    )
    lines = build.requirement_lines(text)
    assert lines[0] == "-r /usr/local/lib/gunicorn-suite/requirements.txt"
    assert lines[1] == f"{wheel} --hash=sha256:{hashlib.sha256(b'wheel bytes').hexdigest()}"
    assert len(lines) == 2
