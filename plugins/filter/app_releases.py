"""Filters of the app role's releases and venvs: their names, where they live, which move, which go."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_layout import (
    app_dirs,
    app_link_target,
    app_release_path,
    app_venv,
    app_venv_from_link,
    app_venv_key,
)


def app_local_files(apps: list[Mapping[str, Any]], excludes: list[str]) -> dict[str, Any]:
    """List what the local sources hold on the controller and name each source's release by its content.

    Returns {"dirs": [...], "files": [...], "targets": [...]}; each dir and file item is {name, release, rel, src},
    each target {name, release, dir, requirements} (one per app: its release, the release's directory on the host and
    the SHA-1 of its top-level requirements.txt, "" without one: what a stat of the shipped file would report, known
    here without a module run on the host). The release is
    "local-" + a hash of every shipped path and its bytes, so the same code is the same release (a rerun changes
    nothing) and any change of code makes a new release directory beside the serving one. Excluded names (bytecode,
    VCS and venv directories) never reach the host, so the controller's own caches neither make a release nor
    trigger a reload.
    """
    dirs: list[dict[str, str]] = []
    files: list[dict[str, str]] = []
    targets: list[dict[str, str]] = []

    def skipped(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in excludes)

    for app in apps:
        if app.get("source") != "local" or app.get("state") != "present":
            continue
        root, name = app["path"], app["name"]
        digest = hashlib.sha256()
        app_dirs: list[dict[str, str]] = []
        app_files: list[dict[str, str]] = []
        for current, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if not skipped(d))
            rel_dir = os.path.relpath(current, root)
            if rel_dir != ".":
                app_dirs.append({"name": name, "rel": rel_dir, "src": current})
                digest.update(b"d\0" + rel_dir.encode() + b"\0")
            for file_name in sorted(names):
                if skipped(file_name):
                    continue
                rel = os.path.normpath(os.path.join(rel_dir, file_name))
                src = os.path.join(current, file_name)
                app_files.append({"name": name, "rel": rel, "src": src})
                with open(src, "rb") as handle:
                    digest.update(b"f\0" + rel.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
        release = "local-" + digest.hexdigest()[:12]
        requirements = ""
        if any(item["rel"] == "requirements.txt" for item in app_files):
            with open(os.path.join(root, "requirements.txt"), "rb") as handle:
                requirements = hashlib.sha1(handle.read()).hexdigest()
        targets.append(
            {"name": name, "release": release, "dir": app_release_path(app, release), "requirements": requirements}
        )
        dirs += [{**item, "release": release} for item in app_dirs]
        files += [{**item, "release": release} for item in app_files]
    return {"dirs": dirs, "files": files, "targets": targets}


def app_git_release(commit: str) -> str:
    """The release name of a git source: the commit it checks out, abbreviated as git abbreviates (12 hex digits)."""
    if not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
        raise ValueError(f"not a full git commit id: {commit!r}")
    return "git-" + commit[:12]


def app_pip_release(app: Mapping[str, Any]) -> str:
    """The release name of a pip source: its code lives in the venv, the release directory records the requirement."""
    return "pip-" + hashlib.sha256(str(app.get("requirement")).encode()).hexdigest()[:12]


def app_moving(link_results: list[Mapping[str, Any]], releases: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The apps whose `app` link (a stat result per app) does not point at the release this run deploys yet."""
    return [
        result["item"]
        for result in link_results
        if result["stat"].get("lnk_target") != app_link_target(releases[result["item"]["name"]])
    ]


def app_stale_releases(find_results: list[Mapping[str, Any]], releases: Mapping[str, str], keep: int) -> list[str]:
    """The release directories to delete: all but the newest `keep` per app (by mtime), never the serving one."""
    stale: list[str] = []
    for result in find_results:
        serving = releases[result["item"]["name"]]
        found = sorted(result["files"], key=lambda entry: entry["mtime"], reverse=True)
        others = [entry["path"] for entry in found if os.path.basename(entry["path"]) != serving]
        stale += others[max(keep - 1, 0) :]
    return sorted(stale)


def app_venv_moving(link_results: list[Mapping[str, Any]], venvs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The apps whose `venv` link (a stat result per app) does not name the venv this run deploys.

    That is a first deploy, a venv of a release before 1.1.0 (a directory, not a link), or another set of requirements.
    """
    return [
        result["item"]["name"]
        for result in link_results
        if result["stat"].get("lnk_target") != venvs[result["item"]["name"]]["link_target"]
    ]


def app_unused_venvs(listings: list[Mapping[str, Any]], venvs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The venv directories no kept release records and no app serves from: what pruning removes.

    listings: per app (item), the lines of prune.yml's listing of its venvs ("venv KEY") and of its kept releases'
    venv records ("record TARGET"); venvs: the venv each app serves from after this run (app_venvs).
    """
    unused = []
    for result in listings:
        app = result["item"]
        built, used = set(), {venvs[app["name"]]["key"]} if app["name"] in venvs else set()
        for line in (result.get("stdout") or "").splitlines():
            kind, _, value = line.partition(" ")
            if kind == "venv":
                built.add(value)
            elif kind == "record":
                used.add(posixpath.basename(posixpath.normpath(value)))
        unused += [app_venv(app, key)["path"] for key in sorted(built - used)]
    return unused


class FilterModule:
    """Releases and venvs."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "app_local_files": app_local_files,
            "app_git_release": app_git_release,
            "app_pip_release": app_pip_release,
            "app_release_path": app_release_path,
            "app_link_target": app_link_target,
            "app_moving": app_moving,
            "app_stale_releases": app_stale_releases,
            "app_venv_key": app_venv_key,
            "app_venv": app_venv,
            "app_venv_from_link": app_venv_from_link,
            "app_venv_moving": app_venv_moving,
            "app_unused_venvs": app_unused_venvs,
            "app_dirs": app_dirs,
        }
