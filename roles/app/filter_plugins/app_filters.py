"""Filters of the app role: normalise the operator's app list and name every invalid input before the host is touched.

They run on the controller, so the checks of a local source directory see the controller's file system. The runtime
variables are checked with the same rules gunicorn_conf.py applies at start, so a value the service would refuse is
refused here first, while the previous version is still serving.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import os
import posixpath
import re
from collections.abc import Mapping
from typing import Any

# systemd instance names allow more, user names allow less: this is what both accept (useradd's limit is 32).
NAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
SOURCES = ("local", "git", "pip")
STATES = ("present", "absent")
DEFAULT_PORT = 80  # gunicorn_conf.py's default; used only to detect two apps on one port
# Variables the unit sets itself; an env file must not move the app away from its directory.
RESERVED_ENV = ("APP_DIR", "RUNTIME_DIRECTORY")
# Variables that name a file the launcher resolves relative to the app directory.
PATH_ENV = ("GUNICORN_CONF", "PRE_START_PATH")
# An app's releases live in <home>/releases; its `app` link names one relatively (releases/RELEASE).
RELEASES_DIR = "releases"
FLOAT_RE = re.compile(r"^\s*(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")


def _text(value: Any) -> str:
    """Render an env value the way the env file will carry it (YAML true -> "true", 2 -> "2")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int(raw: str) -> int | None:
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _bind_port(bind: str) -> int | None:
    """The TCP port a BIND value names, or None (unix socket, fd, or no port given)."""
    if bind.startswith(("unix:", "fd://")):
        return None
    _, sep, port = bind.rpartition(":")
    if not sep or port.endswith("]"):
        return DEFAULT_PORT
    return _int(port)


def app_effective_port(app: Mapping[str, Any]) -> int | None:
    """Port the app will listen on: its `port`, else env PORT, else BIND's port, else the runtime default."""
    env = {**(app.get("env") or {}), **(app.get("secret_env") or {})}
    if app.get("port") is not None:
        return _int(str(app["port"]))
    if str(env.get("BIND", "")).strip():
        return _bind_port(str(env["BIND"]).strip())
    if str(env.get("PORT", "")).strip():
        return _int(str(env["PORT"]))
    return DEFAULT_PORT


def app_health_url(app: Mapping[str, Any]) -> str | None:
    """URL the health check fetches on the host itself, or None when the app listens on a unix socket."""
    port = app_effective_port(app)
    if port is None:
        return None
    host = str(app["env"].get("HOST", "")).strip()
    bind = str(app["env"].get("BIND", "")).strip()
    if bind:
        host = bind.rpartition(":")[0] if ":" in bind else bind
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"http://{host}:{port}{app.get('health_path') or '/'}"


def app_dirs(name: str, apps_root: str) -> dict[str, str]:
    """Where an app's parts live on the host: the one spelling of the layout for the role's tasks.

    The server role's unit template names the same paths with %i for NAME; a unit test holds the two together.
    """
    home = posixpath.join(apps_root, name)
    venv = posixpath.join(home, "venv")
    return {
        "home": home,
        "link": posixpath.join(home, "app"),
        "releases": posixpath.join(home, RELEASES_DIR),
        "repo": posixpath.join(home, "repo"),
        "venv": venv,
        "python": posixpath.join(venv, "bin", "python"),
        "pip": posixpath.join(venv, "bin", "pip"),
    }


def app_normalize(apps: list[Mapping[str, Any]], base_dir: str, apps_root: str) -> list[dict[str, Any]]:
    """Fill every optional field, so tasks and templates never need a default() of their own.

    Each app also carries `dirs`, its directories under apps_root (see app_dirs). apps_root is the server role's
    `server_stack.apps_root`, passed in rather than defaulted here, so the layout's root has one spelling.
    """
    result = []
    for app in apps or []:
        env = {str(key): _text(value) for key, value in (app.get("env") or {}).items()}
        secret_env = {str(key): _text(value) for key, value in (app.get("secret_env") or {}).items()}
        if app.get("port") is not None:
            env["PORT"] = _text(app["port"])
        path = app.get("path")
        normal = {
            "name": app.get("name"),
            "state": app.get("state") or "present",
            "source": app.get("source") or ("local" if path else "git" if app.get("repo") else "pip"),
            "path": os.path.normpath(os.path.join(base_dir, path)) if path else None,
            "repo": app.get("repo"),
            "version": app.get("version") or "HEAD",
            "requirement": app.get("requirement"),
            "port": app.get("port"),
            "env": env,
            "secret_env": secret_env,
            "health_path": app.get("health_path") or "/",
            "health_status": int(app.get("health_status") or 200),
            "dirs": app_dirs(str(app.get("name")), apps_root),
        }
        normal["health_url"] = app_health_url({**normal, "env": {**env, **secret_env}})
        result.append(normal)
    return result


def _env_errors(where: str, env: Mapping[str, Any], app: Mapping[str, Any], secret: bool = False) -> list[str]:
    """Apply gunicorn_conf.py's rules to the variables the operator set; name the variable and its value.

    A secret_env value is never repeated: the message names the variable only, as no_log hides it everywhere else.
    """
    errors = []
    for key, value in env.items():
        text = _text(value)
        label = f"{where}.{key}" + (" (value hidden)" if secret else f"={text!r}")
        if not ENV_KEY_RE.match(str(key)):
            errors.append(f"{where} key {key!r} is invalid: expected letters, digits and _ (not starting with a digit)")
        elif "\n" in text or "\r" in text or "\0" in text:
            errors.append(f"{where}.{key} is invalid: a value must be one line")
        elif key in RESERVED_ENV:
            errors.append(f"{label} is invalid: the unit sets {key} itself")
        elif key == "WORKERS_PER_CORE":
            number = float(text) if FLOAT_RE.match(text) else math.nan
            if not (math.isfinite(number) and number > 0):
                errors.append(f"{label} is invalid: expected a number greater than 0")
        elif key in ("WEB_CONCURRENCY", "MAX_WORKERS"):
            number = _int(text)
            if number is None or number <= 0:
                errors.append(f"{label} is invalid: expected a whole number greater than 0")
        elif key in ("TIMEOUT", "GRACEFUL_TIMEOUT", "KEEP_ALIVE", "WORKER_MAX_MEMORY"):
            number = _int(text)
            if number is None or number < 0:
                errors.append(f"{label} is invalid: expected a whole number >= 0")
        elif key == "PORT":
            number = _int(text)
            if number is None or not 1 <= number <= 65535:
                errors.append(f"{label} is invalid: expected a port number from 1 to 65535")
        elif key == "BIND" and text.strip().startswith("fd://"):
            errors.append(f"{label} is invalid: systemd passes the app its socket; use HOST:PORT or unix:PATH")
        elif key == "BIND" and not text.strip().startswith("unix:"):
            port = _bind_port(text)
            if port is None or not 1 <= port <= 65535:
                errors.append(f"{label} is invalid: expected HOST:PORT or unix:PATH with a port from 1 to 65535")
        elif key == "LOG_LEVEL" and text.strip().lower() not in LOG_LEVELS:
            errors.append(f"{label} is invalid: expected one of {', '.join(LOG_LEVELS)}")
        elif key in PATH_ENV and (os.path.isabs(text) or ".." in text.split("/")):
            errors.append(
                f"{label} is invalid: the path is outside the app directory (give it relative to the app dir)"
            )
    if app.get("port") is not None and "PORT" in env and _int(_text(env["PORT"])) != _int(str(app["port"])):
        shown = " (value hidden)" if secret else f"={_text(env['PORT'])!r}"
        errors.append(f"{where}.PORT{shown} contradicts port={app['port']!r}: set one of them")
    return errors


def _source_errors(where: str, app: Mapping[str, Any], base_dir: str) -> list[str]:
    source = app.get("source") or ("local" if app.get("path") else "git" if app.get("repo") else "pip")
    if source not in SOURCES:
        return [f"{where}.source={source!r} is invalid: expected one of {', '.join(SOURCES)}"]
    if source == "local":
        path = app.get("path")
        if not path:
            return [f"{where}.path is missing: a local source needs the app directory on the controller"]
        full = os.path.normpath(os.path.join(base_dir, str(path)))
        if not os.path.isdir(full):
            return [f"{where}.path={path!r} is invalid: {full} is not a directory on the controller"]
    if source == "git" and not app.get("repo"):
        return [f"{where}.repo is missing: a git source needs the repository URL"]
    if source == "pip":
        if not app.get("requirement"):
            return [f"{where}.requirement is missing: a pip source needs a requirement such as 'mypkg==1.0'"]
        env = app.get("env") or {}
        if not (env.get("APP_MODULE") or env.get("MODULE_NAME")):
            return [f"{where}.env.APP_MODULE is missing: a pip-installed app has no main.py to find"]
    return []


def app_input_errors(
    apps: Any,
    apps_root: str,
    accounts: Mapping[str, list[str]] | None = None,
    listeners: list[Mapping[str, Any]] | None = None,
    base_dir: str = ".",
) -> list[str]:
    """Return one line per invalid input (empty when the list can be applied); nothing here touches the host.

    accounts: getent passwd as Ansible returns it (name -> [password, uid, gid, gecos, home, shell]).
    listeners: the gunicorn_listeners module's list ({port, units}) of TCP ports in LISTEN state on the host.
    """
    if not isinstance(apps, list):
        return [f"app_list={apps!r} is invalid: expected a list of apps"]
    errors: list[str] = []
    names: dict[str, int] = {}
    ports: dict[int, str] = {}
    # A port held by an app this same run removes is free once the removal ran (removals run first).
    leaving = {
        f"gunicorn@{app.get('name')}.{unit_type}"
        for app in apps
        if isinstance(app, Mapping) and app.get("state") == "absent"
        for unit_type in ("service", "socket")
    }
    for index, app in enumerate(apps):
        where = f"app_list[{index}]"
        if not isinstance(app, Mapping):
            errors.append(f"{where}={app!r} is invalid: expected a mapping with at least a name")
            continue
        name = app.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            errors.append(
                f"{where}.name={name!r} is invalid: expected a valid unit instance and user name "
                "(lower-case letters, digits, _ and -, starting with a letter or _, at most 32 characters)"
            )
            continue
        where = f"app_list[{index}] ({name})"
        if name in names:
            errors.append(f"{where}.name={name!r} is a duplicate of app_list[{names[name]}]")
            continue
        names[name] = index
        state = app.get("state") or "present"
        if state not in STATES:
            errors.append(f"{where}.state={state!r} is invalid: expected present or absent")
            continue
        account = (accounts or {}).get(name)
        home = app_dirs(name, apps_root)["home"]
        if account is not None and (len(account) < 5 or account[4] != home):
            errors.append(
                f"{where}.name={name!r} collides with the existing account {name!r} (home {account[4]!r}, "
                f"not {home!r}): choose another name"
            )
        if state == "absent":
            continue
        errors += _source_errors(where, app, base_dir)
        env = app.get("env") or {}
        secret_env = app.get("secret_env") or {}
        for label, mapping in (("env", env), ("secret_env", secret_env)):
            if not isinstance(mapping, Mapping):
                errors.append(f"{where}.{label}={mapping!r} is invalid: expected a mapping of variables")
        if not isinstance(env, Mapping) or not isinstance(secret_env, Mapping):
            continue
        errors += _env_errors(f"{where}.env", env, app) + _env_errors(f"{where}.secret_env", secret_env, app, True)
        if app.get("port") is not None:
            port = _int(str(app["port"]))
            if port is None or not 1 <= port <= 65535:
                errors.append(f"{where}.port={app['port']!r} is invalid: expected a port number from 1 to 65535")
                continue
        port = app_effective_port(app)
        if port is None:
            continue
        if port in ports:
            errors.append(f"{where} port {port} is already used by app {ports[port]!r}: give each app its own port")
            continue
        ports[port] = name
        allowed = {f"gunicorn@{name}.service", f"gunicorn@{name}.socket", *leaving}
        for listener in listeners or []:
            if listener.get("port") != port:
                continue
            others = sorted(set(listener.get("units") or ["an unknown process"]) - allowed)
            if others:
                errors.append(f"{where} port {port} is held by {', '.join(others)} on the host: choose another port")
                break
    return errors


def app_local_files(apps: list[Mapping[str, Any]], excludes: list[str]) -> dict[str, Any]:
    """List what the local sources hold on the controller and name each source's release by its content.

    Returns {"dirs": [...], "files": [...], "targets": [...]}; each dir and file item is {name, release, rel, src},
    each target {name, release, dir} (one per app: its release and the release's directory on the host). The release is
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
        targets.append({"name": name, "release": release, "dir": app_release_path(app, release)})
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


def app_listen_stream(bind: str) -> str:
    """The socket unit's ListenStream= for a bind as gunicorn_conf.py resolves it (HOST:PORT, [V6]:PORT, unix:PATH).

    systemd holds the socket, so the address must be one systemd can bind; fd://N has no meaning for a socket unit.
    """
    if bind.startswith("unix:"):
        return bind[len("unix:") :]
    if bind.startswith("fd://"):
        raise ValueError(f"BIND={bind!r} is invalid for a socket-activated app: expected HOST:PORT or unix:PATH")
    _, sep, port = bind.rpartition(":")
    if not sep or port.endswith("]"):
        return f"{bind}:8000"  # Gunicorn's own default port for a bind without one
    return bind


def app_listens(bind_results: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Turn the results of running gunicorn_conf.py per app (one JSON line each) into {name, bind, listen} items."""
    items = []
    for result in bind_results:
        bind = json.loads(result["stdout"])["bind"]
        items.append({"name": result["item"]["name"], "bind": bind, "listen": app_listen_stream(bind)})
    return items


def app_release_path(app: Mapping[str, Any], release: str) -> str:
    """Where RELEASE of a normalised app lives on the host; the `app` link's target (app_link_target) resolves here."""
    return posixpath.join(app["dirs"]["releases"], release)


def app_link_target(release: str) -> str:
    """What an app's `app` link holds to serve RELEASE: relative, so the app directory can move as a whole."""
    return posixpath.join(RELEASES_DIR, release)


def app_moving(link_results: list[Mapping[str, Any]], releases: Mapping[str, str]) -> list[Mapping[str, Any]]:
    """The apps whose `app` link (a stat result per app) does not point at the release this run deploys yet."""
    return [
        result["item"]
        for result in link_results
        if result["stat"].get("lnk_target") != app_link_target(releases[result["item"]["name"]])
    ]


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


def app_stale_releases(find_results: list[Mapping[str, Any]], releases: Mapping[str, str], keep: int) -> list[str]:
    """The release directories to delete: all but the newest `keep` per app (by mtime), never the serving one."""
    stale: list[str] = []
    for result in find_results:
        serving = releases[result["item"]["name"]]
        found = sorted(result["files"], key=lambda entry: entry["mtime"], reverse=True)
        others = [entry["path"] for entry in found if os.path.basename(entry["path"]) != serving]
        stale += others[max(keep - 1, 0) :]
    return sorted(stale)


class FilterModule:
    """Expose the filters to the app role's tasks."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "app_normalize": app_normalize,
            "app_input_errors": app_input_errors,
            "app_effective_port": app_effective_port,
            "app_local_files": app_local_files,
            "app_git_release": app_git_release,
            "app_pip_release": app_pip_release,
            "app_listen_stream": app_listen_stream,
            "app_listens": app_listens,
            "app_link_target": app_link_target,
            "app_release_path": app_release_path,
            "app_moving": app_moving,
            "app_stale_releases": app_stale_releases,
            "app_units_to_stop": app_units_to_stop,
        }
