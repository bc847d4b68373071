"""`ansible-playbook --check` is how an operator previews a deploy: it must say what would change and change nothing.

A check run ships no code, so the new release it reports does not exist on the host; the role must still get through
the whole play (link move, reload, pruning reported as changes) instead of failing at the first step that needs the
release.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.verify.conftest import APP, EXAMPLE_DIR, App, Site


def serving_state(host: Any, app: App) -> tuple[str, str, int]:
    """What a deploy changes: the release the link points at, the releases on disk, the master's PID."""
    releases = host.check_output(f"ls /srv/{APP}/releases")
    return host.check_output(f"readlink /srv/{APP}/app"), releases, app.main_pid


def test_a_check_run_reports_a_code_deploy_and_changes_nothing(site: Site, host: Any, app: App, tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(EXAMPLE_DIR, source, ignore=shutil.ignore_patterns("__pycache__"))
    (source / "VERSION").write_text("a release this host has never seen\n")
    before = serving_state(host, app)
    result = site.converge({"app_list": [{"name": APP, "path": str(source)}]}, check=True)
    assert result.rc == 0, result.output[-3000:]
    assert result.changed > 0, "a check run of new code must report changes"
    assert serving_state(host, app) == before
