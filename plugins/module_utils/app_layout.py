"""Where an app's parts live on a host: the one spelling of the layout for the app role's filters and tasks.

Directories, releases, venvs, the records a release keeps and the restarts a run records.

The server role's unit template names the same paths with %i for NAME; a unit test holds the two together.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections.abc import Mapping
from typing import Any

# An app's releases live in <home>/releases; its `app` link names one relatively (releases/RELEASE).
RELEASES_DIR = "releases"
# Written into an app's directory when the suite makes it: what `state: absent` may remove, and what a new app may use.
APP_MARKER = ".wsgiops-app"
# An app's venvs live in <home>/venvs, one per distinct set of requirements (VENV_KEY_LENGTH hex digits of their
# digest); <home>/venv names the serving one relatively (venvs/KEY), and the unit runs <home>/venv/bin/python.
VENVS_DIR = "venvs"
VENV_KEY_LENGTH = 16
# Written into a venv when its build finished (by root, after the venv was handed back to root): a venv without it is
# half built and is built again from scratch.
VENV_COMPLETE = ".wsgiops-complete"
# What each release records beside its code once it served healthily: its venv (a link into venvs/), its env file and
# its socket drop-in. A rollback to the release restores all three; pruning keeps the venvs these links name.
RELEASE_VENV = ".wsgiops-venv"
RELEASE_ENV = ".wsgiops-env"
RELEASE_LISTEN = ".wsgiops-listen.conf"
# A restart or reload a run decided on, recorded in the app's directory before the change that needs it and removed
# once done: a run stopped in between leaves it for the next run (PENDING_PREFIX + socket | restart | reload).
PENDING_PREFIX = ".wsgiops-pending-"
PENDING_KINDS = ("socket", "restart", "reload")
# In the unit's runtime directory (/run/gunicorn/NAME): its master preloaded the app (gunicorn_conf.py's
# PRELOADED_MARKER, the same name), so a reload would fork the code it imported; the role restarts it instead.
RUNTIME_ROOT = "/run/gunicorn"
PRELOADED_MARKER = "preloaded"


def env_text(value: Any) -> str:
    """Render an env value the way the env file will carry it (YAML true -> "true", 2 -> "2")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def app_dirs(name: str, apps_root: str) -> dict[str, str]:
    """Where an app's parts live on the host: the one spelling of the layout for the role's tasks.

    The server role's unit template names the same paths with %i for NAME; a unit test holds the two together.
    """
    home = posixpath.join(apps_root, name)
    venv = posixpath.join(home, "venv")
    return {
        "home": home,
        "marker": posixpath.join(home, APP_MARKER),
        "link": posixpath.join(home, "app"),
        "previous": posixpath.join(home, "previous"),
        "releases": posixpath.join(home, RELEASES_DIR),
        "repo": posixpath.join(home, "repo"),
        "venv": venv,
        "venvs": posixpath.join(home, VENVS_DIR),
        "python": posixpath.join(venv, "bin", "python"),
    }


def app_venv_key(parts: list[Any]) -> str:
    """The name of the venv that a set of requirements builds: a digest of everything pip is given.

    parts: the interpreter, the checksum of the server stack's requirements, the checksum of the release's
    requirements.txt ('' when it has none), the pip requirement of a pip source ('' otherwise), the pip environment
    (index, CA). Releases with the same parts share a venv, so a code-only deploy reloads the venv that serves; any
    other change builds a new venv beside it and never touches the serving one.
    """
    text = json.dumps([env_text(part) if part is not None else "" for part in parts])
    return hashlib.sha256(text.encode()).hexdigest()[:VENV_KEY_LENGTH]


def app_venv(app: Mapping[str, Any], key: str) -> dict[str, str]:
    """Where the venv KEY of a normalised app lives, and what its release record and the `venv` link hold to name it."""
    path = posixpath.join(app["dirs"]["venvs"], key)
    return {
        "key": key,
        "path": path,
        "python": posixpath.join(path, "bin", "python"),
        "pip": posixpath.join(path, "bin", "pip"),
        "complete": posixpath.join(path, VENV_COMPLETE),
        # Relative, as the `app` link: from <home>/venv and from <home>/releases/RELEASE/.wsgiops-venv.
        "link_target": posixpath.join(VENVS_DIR, key),
        "record_target": posixpath.join("..", "..", VENVS_DIR, key),
    }


def app_venv_from_link(app: Mapping[str, Any], target: str | None) -> dict[str, str] | None:
    """The venv a `venv` link or a release's venv record names (None: no link, or one that names no venv of ours)."""
    if not target:
        return None
    parts = posixpath.normpath(target).split("/")
    key = parts[-1]
    if len(parts) < 2 or parts[-2] != VENVS_DIR or not re.fullmatch(r"[0-9a-z][0-9a-z-]*", key):
        return None
    return app_venv(app, key)


def app_release_path(app: Mapping[str, Any], release: str) -> str:
    """Where RELEASE of a normalised app lives on the host; the `app` link's target (app_link_target) resolves here."""
    return posixpath.join(app["dirs"]["releases"], release)


def app_link_target(release: str) -> str:
    """What an app's `app` link holds to serve RELEASE: relative, so the app directory can move as a whole."""
    return posixpath.join(RELEASES_DIR, release)


def pending_kind(path: str) -> str | None:
    """The kind (socket, restart or reload) of a pending record at PATH; None for any other file."""
    base = posixpath.basename(path)
    kind = base.removeprefix(PENDING_PREFIX)
    return kind if base.startswith(PENDING_PREFIX) and kind in PENDING_KINDS else None


def app_record_paths(app: Mapping[str, Any], release: str) -> dict[str, str]:
    """Where RELEASE of a normalised app keeps its records: {venv, env, listen} (see RELEASE_VENV and friends)."""
    where = app_release_path(app, release)
    return {
        "venv": posixpath.join(where, RELEASE_VENV),
        "env": posixpath.join(where, RELEASE_ENV),
        "listen": posixpath.join(where, RELEASE_LISTEN),
    }


def app_pending_path(app: Mapping[str, Any], kind: str) -> str:
    """Where a normalised app's record of a pending KIND (socket, restart or reload) lives."""
    if kind not in PENDING_KINDS:
        raise ValueError(f"no pending record of kind {kind!r}")
    return posixpath.join(app["dirs"]["home"], PENDING_PREFIX + kind)
