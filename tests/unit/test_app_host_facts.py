"""plugins/modules/app_host_facts.py: the one read of the host the app role plans from, in the shapes it used to get
from ansible.builtin.stat, find and getent (the role's filters read them unchanged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO, load_module

MODULE = REPO / "plugins" / "modules" / "app_host_facts.py"


@pytest.fixture(scope="module")
def facts() -> ModuleType:
    return load_module(MODULE)


def run(tmp_path: Path, **args: Any) -> dict[str, Any]:
    """Run the module as Ansible does (an arguments file), with the checkout importable as the collection."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "collections")}
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False, env=env
    )
    return json.loads(done.stdout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An apps root with a served app (web), one mid-migration (old: code in a directory), and a stranger's dir."""
    srv = tmp_path / "srv"
    (srv / "web" / "releases" / "r1").mkdir(parents=True)
    (srv / "web" / ".wsgiops-app").write_text("")
    (srv / "web" / "app").symlink_to("releases/r1")
    (srv / "web" / "venv").symlink_to("venvs/abc")
    (srv / "web" / ".wsgiops-pending-restart").write_text("restart\n")
    (srv / "web" / "releases" / "r1" / ".wsgiops-env").write_text("")
    (srv / "web" / "releases" / "r1" / "main.py").write_text("")
    (srv / "old" / "app").mkdir(parents=True)
    (srv / "old" / ".wsgiops-app").mkdir()  # a directory named like the marker is no marker
    (srv / "other").mkdir()
    (srv / "link-to-dir").symlink_to("other")
    return srv


def test_reads_links_records_and_marked_directories(tmp_path: Path, root: Path) -> None:
    result = run(
        tmp_path,
        apps_root=str(root),
        marker=".wsgiops-app",
        names=["web", "old", "new", "../etc", "bad name"],
        found=[".wsgiops-pending-*", ".wsgiops-env", ".wsgiops-venv"],
    )
    assert result["changed"] is False
    assert result["root_dirs"] == ["old", "other", "web"]
    assert result["root_markers"] == ["web"]
    assert set(result["apps"]) == {"web", "old", "new"}  # not a path, not a name with a space
    web = result["apps"]["web"]
    assert web["link"] == {
        "exists": True,
        "path": f"{root}/web/app",
        "islnk": True,
        "isdir": False,
        "lnk_target": "releases/r1",
    }
    assert web["venv"]["lnk_target"] == "venvs/abc"
    assert [entry["path"] for entry in web["found"]] == [
        f"{root}/web/.wsgiops-pending-restart",
        f"{root}/web/app/.wsgiops-env",
    ]
    old = result["apps"]["old"]
    assert old["link"]["isdir"] is True and old["link"]["islnk"] is False and "lnk_target" not in old["link"]
    assert result["apps"]["new"]["link"] == {"exists": False} and result["apps"]["new"]["found"] == []
    assert result["passwd"]["root"][4] == "/root" and "root" in result["group"]
    assert isinstance(result["listeners"], list)


@pytest.mark.parametrize(
    ("show", "expected"),
    [
        (
            "Id=gunicorn@web.socket\nActiveState=active\nUnitFileState=enabled\n\n"
            "Id=gunicorn@web.service\nActiveState=activating\nUnitFileState=disabled\n",
            {
                "gunicorn@web.socket": {"active": True, "enabled": True, "failed": False},
                "gunicorn@web.service": {"active": False, "enabled": False, "failed": False},
            },
        ),
        (
            "Id=gunicorn@a.service\nActiveState=active\nUnitFileState=enabled-runtime\n",
            {"gunicorn@a.service": {"active": True, "enabled": True, "failed": False}},
        ),
        (  # what the start limit leaves: a failed unit, which a deploy must start again
            "Id=gunicorn@a.service\nActiveState=failed\nUnitFileState=enabled\n",
            {"gunicorn@a.service": {"active": False, "enabled": True, "failed": True}},
        ),
        ("", {}),
    ],
)
def test_unit_states_say_what_needs_a_start(facts: ModuleType, show: str, expected: dict[str, Any]) -> None:
    assert facts.unit_states(show) == expected


def test_lists_the_markers_of_releases_and_venvs_built_whole(tmp_path: Path, root: Path) -> None:
    """build.yml ships and builds only what this list lacks: a marker missing here means work redone."""
    web = root / "web"
    (web / "releases" / "r1" / ".shipped").write_text("")
    (web / "releases" / "r2").mkdir()  # a run stopped while shipping r2: no marker
    for key, whole in (("abc", True), ("def", False)):
        (web / "venvs" / key).mkdir(parents=True)
        if whole:
            (web / "venvs" / key / ".wsgiops-complete").write_text("")
    result = run(
        tmp_path,
        apps_root=str(root),
        marker=".wsgiops-app",
        names=["web", "new"],
        present=["releases/*/.shipped", "venvs/*/.wsgiops-complete"],
    )
    assert result["apps"]["web"]["present"] == [f"{web}/releases/r1/.shipped", f"{web}/venvs/abc/.wsgiops-complete"]
    assert result["apps"]["new"]["present"] == []


def test_reads_which_running_masters_preloaded_their_app(tmp_path: Path, root: Path) -> None:
    """The marker gunicorn_conf.py leaves in a preloading master's runtime directory: the role restarts that app."""
    runtime = tmp_path / "run-gunicorn"
    (runtime / "web").mkdir(parents=True)
    (runtime / "web" / "preloaded").write_text("")
    (runtime / "old" / "preloaded").mkdir(parents=True)  # a directory is no marker
    result = run(
        tmp_path, apps_root=str(root), marker=".wsgiops-app", names=["web", "old", "new"], runtime_root=str(runtime)
    )
    assert {name: app["preloaded"] for name, app in result["apps"].items()} == {"web": True, "old": False, "new": False}


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        ("", []),
        (
            "wsgiops-venv-web-0a1b.service loaded activating start start /bin/sh -ec ...\n",
            ["wsgiops-venv-web-0a1b.service"],
        ),
        (
            "wsgiops-venv-a-1.service loaded active running x\n\nwsgiops-venv-b-2.service loaded failed failed y\n",
            ["wsgiops-venv-a-1.service", "wsgiops-venv-b-2.service"],
        ),
    ],
)
def test_loaded_units_are_the_first_column(facts: ModuleType, listing: str, expected: list[str]) -> None:
    """The venv builds a stopped run left loaded: the only ones build.yml stops (a fresh host costs no stop)."""
    assert facts.loaded_units(listing) == expected
