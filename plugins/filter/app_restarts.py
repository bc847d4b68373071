"""Filters of the app role's restarts: what each running app needs (its socket restarted, a restart, a reload).

Each is recorded on the host before the change that needs it and read back by the next run.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_layout import (
    PENDING_KINDS,
    RELEASE_ENV,
    RELEASE_LISTEN,
    RELEASE_VENV,
    RELEASES_DIR,
    app_pending_path,
    app_record_paths,
    pending_kind,
)


def app_units_to_stop(show_output: str) -> list[str]:
    """The units of `systemctl show -p Id,LoadState,ActiveState,UnitFileState U...` that are running or enabled.

    A removed app's socket instance without its ListenStream= drop-in (removed by an earlier run, or never written
    because its first deploy failed) does not load ("bad-setting"): it cannot run, and systemctl refuses to act on it,
    so only loaded units are stopped and disabled. That keeps `state: absent` converging on every later run.
    """
    stop: list[str] = []
    for block in show_output.strip().split("\n\n"):
        unit = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        running = unit.get("ActiveState", "inactive") not in ("inactive", "failed")
        enabled = unit.get("UnitFileState", "").startswith("enabled")
        if unit.get("LoadState") == "loaded" and (running or enabled):
            stop.append(unit["Id"])
    return stop


def app_plan(
    apps: list[Mapping[str, Any]], changed: Mapping[str, list[str]], stack: Mapping[str, Any]
) -> list[dict[str, str]]:
    """What each running app needs after this run's changes: one action, the strongest that covers them all.

    changed: app names per kind of change: started (its first start, in this run), socket (where it listens), env
    (its settings), venv (its packages: a new venv, which the running master cannot load), code (its link moved), and
    the restarts and reloads an earlier run recorded and did not do (pending_socket, pending_restart, pending_reload);
    and preloaded, the apps whose running master preloaded the app (app_preloaded): a reload would fork the code that
    master imported, so they restart instead.
    stack: the server role's server_stack (resocket_all, restart_all, reload_all: its unit or runtime files changed).
    A socket change restarts the instance too, a restart covers a reload, and an instance started for the first time in
    this run (app_first_starts) already runs everything new. Returns [{name, unit, state, why, kind}], in app order
    (two steps for a socket change, see socket_steps); kind names the record a stopped run leaves (PENDING_PREFIX +
    kind).
    """

    def has(kind: str, name: str) -> bool:
        return name in (changed.get(kind) or [])

    plan = []
    for app in apps:
        name = app["name"]
        if has("started", name):
            continue
        if has("socket", name) or has("pending_socket", name) or stack.get("resocket_all"):
            kind, why = "socket", "where it listens changed"
        elif has("env", name) or stack.get("restart_all"):
            kind, why = "restart", "its settings or the unit changed"
        elif has("venv", name):
            kind, why = "restart", "its packages changed (a new venv)"
        elif has("pending_restart", name):
            kind, why = "restart", "an earlier run changed it and stopped before restarting"
        elif has("code", name) or stack.get("reload_all"):
            kind, why = "reload", "its code or the runtime files changed"
        elif has("pending_reload", name):
            kind, why = "reload", "an earlier run changed it and stopped before reloading"
        else:
            continue
        if kind == "reload" and has("preloaded", name):
            kind, why = "restart", f"{why}, and it runs preloaded (PRELOAD: a reload would fork the old code)"
        if kind == "socket":
            plan.extend(socket_steps(name, why))
        else:
            state = "reloaded" if kind == "reload" else "restarted"
            plan.append({"name": name, "unit": f"gunicorn@{name}.service", "state": state, "why": why, "kind": kind})
    return plan


def app_preloaded(before: Mapping[str, Any]) -> list[str]:
    """The apps whose running master preloaded the app (app_host_facts' apps, read before the run changed anything)."""
    return sorted(name for name, app in before.items() if app.get("preloaded"))


def socket_steps(name: str, why: str) -> list[dict[str, str]]:
    """Move an app's socket: stop the socket (systemd stops the service with it), then start the service.

    Not `systemctl restart NAME.socket`: a restart only try-restarts the service that Requires= it, which does nothing
    to an instance still starting (activating: its first connection started it, or it is slow to boot), and systemd
    then refuses to start a socket whose service is not dead ("Socket service ... already active, refusing"). A stop
    stops the service whatever its state, and starting the service starts the socket first (Requires=, After=).
    """
    return [
        {"name": name, "unit": f"gunicorn@{name}.socket", "state": "stopped", "why": why, "kind": "socket"},
        {
            "name": name,
            "unit": f"gunicorn@{name}.service",
            "state": "started",
            "why": "on its new socket",
            "kind": "socket",
        },
    ]


def _units_before(before: Mapping[str, Any], name: str) -> Mapping[str, Mapping[str, bool]]:
    """App NAME's units as app_host_facts read them before the run changed anything ({} for an app it did not see)."""
    return (before.get(name) or {}).get("units") or {}


def app_first_starts(apps: list[Mapping[str, Any]], before: Mapping[str, Any]) -> list[str]:
    """The apps this run starts for the first time: neither their socket nor their service was active when it began.

    before: app_host_facts' apps (units per app, read before anything changed). Such an app's socket starts only after
    this run wrote everything (switch.yml), so whatever instance runs afterwards, started by the role or by a first
    connection on the new socket (a balancer's health check is quick), runs the new code and settings. Whether the
    role's own start task changed anything says nothing here: a connection may have started the instance first.
    """
    first = []
    for app in apps:
        units = _units_before(before, app["name"])
        if not any((units.get(kind) or {}).get("active") for kind in ("socket", "service")):
            first.append(app["name"])
    return first


def app_start_limit_resets(
    plan: list[Mapping[str, str]], apps: list[Mapping[str, Any]], before: Mapping[str, Any]
) -> list[str]:
    """The units whose start-rate counter a run clears before it (re)starts them: `systemctl reset-failed UNIT...`.

    The unit's StartLimitBurst= guards against a crash loop; it counts every start, the role's too. A few deploys,
    rollbacks or restarts by hand within its interval would make the role's next restart refused ("start request
    repeated too quickly") and leave the socket failed, refusing every connection; an app the limit already stopped
    (failed) would stay down through the very deploy meant to fix it. So the units of the plan (but a reload, which
    starts nothing) and those of the apps found failed when the run began (before: app_host_facts' apps) start from a
    clear counter. Only those: reset-failed refuses a unit that is not loaded, and a unit that never ran has nothing
    counted.
    """
    units = {step["unit"] for step in plan if step["state"] != "reloaded"}
    for app in apps:
        for kind, state in _units_before(before, app["name"]).items():
            if state.get("failed"):
                units.add(f"gunicorn@{app['name']}.{kind}")
    return sorted(units)


def app_pending(find_results: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The restarts and reloads earlier runs recorded and did not do, from a find of PENDING_PREFIX* per app.

    Returns {pending_socket: [names], pending_restart: [names], pending_reload: [names]}, app_plan's keys.
    """
    found: dict[str, list[str]] = {f"pending_{kind}": [] for kind in PENDING_KINDS}
    for result in find_results:
        for entry in result.get("files") or []:
            kind = pending_kind(entry["path"])
            if kind:
                found[f"pending_{kind}"].append(result["item"]["name"])
    return found


def app_serving_unrecorded(
    find_results: list[Mapping[str, Any]], link_results: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The serving releases that lack records (served before 1.1.0, or by a run stopped before it recorded them).

    find_results: a find per app over its home and its `app` link (what app_host_facts gathers); link_results: the stat
    of each app's `app` link. Returns [{app, release, missing: [venv | env | listen], paths}]: what is recorded before
    this run changes anything, so a failed health check and a rollback can go back to what serves now.
    """
    found = {
        result["item"]["name"]: {posixpath.basename(entry["path"]) for entry in result.get("files") or []}
        for result in find_results
    }
    names = {"venv": RELEASE_VENV, "env": RELEASE_ENV, "listen": RELEASE_LISTEN}
    unrecorded = []
    for result in link_results:
        app, target = result["item"], result["stat"].get("lnk_target")
        if not target or not target.startswith(RELEASES_DIR + "/"):
            continue
        release = posixpath.basename(target)
        missing = [kind for kind, name in names.items() if name not in found.get(app["name"], set())]
        if missing:
            unrecorded.append(
                {"app": app, "release": release, "missing": missing, "paths": app_record_paths(app, release)}
            )
    return unrecorded


def app_pending_found(find_results: list[Mapping[str, Any]]) -> list[str]:
    """The paths of the pending records a find of each app's home found (what a run removes once it applied them)."""
    return sorted(
        entry["path"] for result in find_results for entry in result.get("files") or [] if pending_kind(entry["path"])
    )


def app_pending_paths(apps: list[Mapping[str, Any]]) -> list[str]:
    """Every pending record the apps may have: what a run removes once it applied its plan."""
    return [app_pending_path(app, kind) for app in apps for kind in PENDING_KINDS]


class FilterModule:
    """Restarts, reloads and their records."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "app_units_to_stop": app_units_to_stop,
            "app_plan": app_plan,
            "app_preloaded": app_preloaded,
            "app_first_starts": app_first_starts,
            "app_start_limit_resets": app_start_limit_resets,
            "app_pending": app_pending,
            "app_pending_paths": app_pending_paths,
            "app_pending_path": app_pending_path,
            "app_pending_found": app_pending_found,
            "app_record_paths": app_record_paths,
            "app_serving_unrecorded": app_serving_unrecorded,
        }
