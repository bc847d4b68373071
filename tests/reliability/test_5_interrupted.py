"""An interrupted run (Ctrl-C, a dropped SSH connection) leaves the host half-changed: the next run must finish the job.

The windows tested here are the long steps of a first deploy: the build of a new app's venv (ensurepip and pip, a
minute under TCG; a run killed there leaves a venv without its completion mark), and the shipping of the app's files
into its release (stopped there, the release holds some files, maybe one cut short, and no `.shipped` marker). The
first is a real run killed during the build, the second is made by hand; one converge must then serve both apps.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import load_app_filters
from tests.reliability.conftest import EXAMPLE, Report, Watcher
from tests.verify.conftest import EXAMPLE_DIR, HELLO, REPO, App, Site

HALFWAY, HALFWAY_PORT = "halfway", 8084
HALFCOPY, HALFCOPY_PORT = "halfcopy", 8085
APP_ROLE = REPO / "roles" / "app"


def local_release(name: str, source: Path) -> str:
    """The release name the app role gives the code in ``source`` deployed as ``name`` (its filter, its excludes)."""
    filters = load_app_filters()
    excludes = yaml.safe_load((APP_ROLE / "defaults" / "main.yml").read_text())["app_local_excludes"]
    # The release name does not depend on the apps root; any root names the same release.
    apps = filters.app_normalize([{"name": name, "path": str(source)}], ".", "/srv")
    (target,) = filters.app_local_files(apps, excludes)["targets"]
    return target["release"]


def example_with_more_files(root: Path) -> Path:
    """The example app plus what a real source has: a subdirectory and a prestart.sh."""
    shutil.copytree(EXAMPLE_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "static").mkdir()
    (root / "static" / "hello.txt").write_text("hello\n")
    (root / "prestart.sh").write_text("#!/bin/sh\nexit 0\n")
    return root


def test_a_first_deploy_stopped_halfway_is_finished_by_the_next_run(
    site: Site, host: Any, report: Report, tmp_path: Path
) -> None:
    watcher = Watcher(site)
    venvs = f"/srv/{HALFWAY}/venvs"
    halfway = [EXAMPLE, {"name": HALFWAY, "path": str(EXAMPLE_DIR), "port": HALFWAY_PORT}]
    # Killed while its venv is being built: the interpreter is in, the completion mark is not.
    building = f"ls {venvs}/*/bin/python && ! ls {venvs}/*/.wsgiops-complete"
    watcher.kill_run_when(site.argv({"app_list": halfway}), building)
    assert host.run(f"ls {venvs}/*/bin/python").rc == 0
    assert host.run(f"ls {venvs}/*/.wsgiops-complete").rc != 0
    useradd = f"useradd --system --user-group --home-dir /srv/{HALFCOPY} --no-create-home --shell /usr/sbin/nologin"
    host.run_expect([0], f"{useradd} {HALFCOPY}")
    # What a stop while shipping leaves: the release directory with a file cut short, the rest missing.
    source = example_with_more_files(tmp_path / "src")
    release = f"/srv/{HALFCOPY}/releases/{local_release(HALFCOPY, source)}"
    host.run_expect([0], f"install -d {release}")
    host.run_expect([0], f"echo 'import sys' > {release}/main.py")
    apps = [
        EXAMPLE,
        {"name": HALFWAY, "path": str(EXAMPLE_DIR), "port": HALFWAY_PORT},
        {"name": HALFCOPY, "path": str(source), "port": HALFCOPY_PORT},
    ]
    result = site.converge({"app_list": apps})
    halfway_served = App(host, HALFWAY).wait_serving(HALFWAY_PORT) if result.rc == 0 else (0, "")
    halfcopy_served = App(host, HALFCOPY).wait_serving(HALFCOPY_PORT) if result.rc == 0 else (0, "")
    report.faults.append(
        (
            "a run killed while it built a venv",
            halfway_served == (200, HELLO),
            f"next run rc={result.rc}, the app answered {halfway_served[0]}",
        )
    )
    report.faults.append(
        (
            "a run stopped while shipping the code",
            halfcopy_served == (200, HELLO),
            f"next run rc={result.rc}, the app answered {halfcopy_served[0]}",
        )
    )
    assert result.rc == 0, result.output[-3000:]
    assert host.run(f"ls /srv/{HALFWAY}/venv/.wsgiops-complete").rc == 0, "the venv that serves is whole"
    assert halfway_served == (200, HELLO)
    assert host.file(f"{release}/main.py").content_string == (EXAMPLE_DIR / "main.py").read_text()
    assert host.file(f"{release}/.shipped").exists
    # The shipped release: root-owned code that the app's group can read (and run prestart.sh from) but not change.
    owners = host.check_output(f"cd {release} && stat -c '%n %a %U %G' main.py static static/hello.txt prestart.sh")
    assert owners.splitlines() == [
        f"main.py 640 root {HALFCOPY}",
        f"static 750 root {HALFCOPY}",
        f"static/hello.txt 640 root {HALFCOPY}",
        f"prestart.sh 750 root {HALFCOPY}",
    ]
    assert halfcopy_served == (200, HELLO)
    gone = [EXAMPLE, {"name": HALFWAY, "state": "absent"}, {"name": HALFCOPY, "state": "absent"}]
    removed = site.converge({"app_list": gone})
    assert removed.rc == 0, removed.output[-3000:]
    assert not host.file(f"/srv/{HALFWAY}").exists
    assert not host.file(f"/srv/{HALFCOPY}").exists
