"""Filters of the app role: normalise the operator's app list and name every invalid input before the host is touched.

They run on the controller, so the checks of a local source directory see the controller's file system. The runtime
variables are checked by gunicorn_conf.py's own resolve() (the server role's runtime file, loaded from this collection),
so a value the service would refuse is refused here first, while the previous version is still serving, and the
socket address, the health-check URL and the port checks all read the bind that function resolves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import ipaddress
import json
import os
import posixpath
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_layout import (
    APP_MARKER,
    app_dirs,
    env_text,
)
from ansible_collections.wsgiops.meinheld_gunicorn.plugins.module_utils.app_secrets import (
    app_repo_public,
    app_secret_env,
)

# systemd instance names allow more, user names allow less: this is what both accept (useradd's limit is 32).
NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SOURCES = ("local", "git", "pip")
STATES = ("present", "absent")
# Variables that name a file the launcher resolves relative to the app directory.
PATH_ENV = ("GUNICORN_CONF", "PRE_START_PATH")
# With `front: true` an app listens on this loopback address only, and believes the forwarding headers of this one
# peer: the front, HAProxy on the same host (a unix socket would put the app's socket inside HAProxy's chroot, the
# app's group on HAProxy's user, and leave FORWARDED_ALLOW_IPS without an address to trust).
FRONT_HOST = "127.0.0.1"
# What the front takes over from the app: where the app itself listens is then the front's to say.
LISTEN_VARIABLES = ("HOST", "PORT", "BIND")
# The unit that holds the front's ports once it runs (the distribution's HAProxy).
FRONT_UNIT = "haproxy.service"
# The runtime's rules: the server role installs this file on the host; the checks here import the same file.
RUNTIME_CONF = Path(__file__).resolve().parents[2] / "roles" / "server" / "files" / "gunicorn_conf.py"


def _load_runtime() -> ModuleType:
    """gunicorn_conf.py as a module of functions (imported under its own name it resolves nothing at import)."""
    spec = importlib.util.spec_from_file_location("gunicorn_suite_runtime", RUNTIME_CONF)
    if spec is None or spec.loader is None:  # pragma: no cover - the file travels with the collection
        raise ImportError(f"cannot load {RUNTIME_CONF}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runtime = _load_runtime()


def _int(raw: str) -> int | None:
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _operator_env(app: Mapping[str, Any]) -> dict[str, str]:
    """The variables the operator gave an app (env, secret_env, and `port` as PORT), before the front moves it."""
    env = {str(key): env_text(value) for key, value in (app.get("env") or {}).items()}
    env.update({str(key): env_text(value) for key, value in (app.get("secret_env") or {}).items()})
    if app.get("port") is not None:
        env["PORT"] = env_text(app["port"])
    return env


def app_front(app: Mapping[str, Any]) -> dict[str, Any] | None:
    """With `front: true`: where the front listens and where the app moves to; None without a front.

    The front (HAProxy, the balancer role's configuration, on the app's own host) takes the address the app would
    have had: HOST/PORT/BIND/`port` as gunicorn_conf.resolve_bind reads them (default 0.0.0.0:80). The app moves to
    FRONT_HOST, on `front_port`, or on the port resolve_bind gives a BIND without one (Gunicorn's 8000). Raises
    ConfigError on an invalid variable (app_input_errors reports those first).
    """
    if app.get("front") is not True:
        return None
    public = runtime.resolve_bind(_operator_env(app))
    port = app.get("front_port")
    backend = runtime.resolve_bind({"BIND": FRONT_HOST if port is None else f"{FRONT_HOST}:{env_text(port)}"})
    return {
        "name": app.get("name"),
        "host": public["host"],
        "port": public["port"],
        "bind": public["bind"],
        "backend": backend["bind"],
        "backend_port": backend["port"],
        "trusted": FRONT_HOST,
    }


def _behind_front(env: Mapping[str, str], front: Mapping[str, Any] | None) -> dict[str, str]:
    """The env with the app moved behind its front: on loopback, believing the front's forwarding headers only."""
    if front is None:
        return dict(env)
    moved = {key: value for key, value in env.items() if key not in LISTEN_VARIABLES}
    return {**moved, "BIND": front["backend"], "FORWARDED_ALLOW_IPS": front["trusted"]}


def app_runtime_env(app: Mapping[str, Any]) -> dict[str, str]:
    """The variables an app's env file carries, as the service will read them (behind its front, if it has one)."""
    return _behind_front(_operator_env(app), app_front(app))


def app_listen(app: Mapping[str, Any]) -> dict[str, Any]:
    """Where an app listens, as gunicorn_conf.resolve_bind says: bind, host, port, ListenStream= and the health URL.

    The health URL is what the deploy fetches on the host itself (None for a unix socket). Raises ConfigError on an
    invalid variable (app_input_errors reports those first).
    """
    listen = runtime.resolve_bind(app_runtime_env(app))
    bind, host, port = listen["bind"], listen["host"], listen["port"]
    if port is None:
        stream = bind[len("unix:") :] if bind.startswith("unix:") else None
        return {**listen, "stream": stream, "health_url": None}
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url_host = f"[{local}]" if ":" in local else local
    return {**listen, "stream": bind, "health_url": f"http://{url_host}:{port}{app.get('health_path') or '/'}"}


def app_effective_port(app: Mapping[str, Any]) -> int | None:
    """The TCP port the app will listen on (None: a unix socket or an invalid setting)."""
    try:
        return app_listen(app)["port"]
    except runtime.ConfigError:
        return None


def app_metrics_port(app: Mapping[str, Any]) -> int | None:
    """The TCP port of the app's metrics endpoint (METRICS_BIND), None when it has none or the setting is invalid."""
    try:
        metrics = runtime.resolve(app_runtime_env(app), cores=1)["metrics"]
    except runtime.ConfigErrors:
        return None
    return metrics["port"] if metrics else None


def _fingerprint(key: Any) -> str:
    """A fingerprint as git prints it: upper-case hex without spaces."""
    return "".join(str(key).split()).upper()


def app_normalize(apps: list[Mapping[str, Any]], base_dir: str, apps_root: str) -> list[dict[str, Any]]:
    """Fill every optional field, so tasks and templates never need a default() of their own.

    Each app also carries `dirs`, its directories under apps_root (see app_dirs). apps_root is the server role's
    `server_stack.apps_root`, passed in rather than defaulted here, so the layout's root has one spelling.
    """
    result = []
    for app in apps or []:
        env = {str(key): env_text(value) for key, value in (app.get("env") or {}).items()}
        secret_env = app_secret_env(apps, str(app.get("name")))
        if app.get("port") is not None:
            env["PORT"] = env_text(app["port"])
        front = app_front({**app, "secret_env": secret_env})
        env = _behind_front(env, front)
        path = app.get("path")
        normal = {
            "name": app.get("name"),
            "state": app.get("state") or "present",
            "source": app.get("source") or ("local" if path else "git" if app.get("repo") else "pip"),
            "path": os.path.normpath(os.path.join(base_dir, path)) if path else None,
            # Without credentials (app_repo_public): this dict is a loop item and a fact, which Ansible prints.
            "repo": app_repo_public(app["repo"]) if app.get("repo") else None,
            # What the clone may store and logs may show: the URL without its credentials (app_git_environment gives
            # them to git at run time only).
            "version": app.get("version") or "HEAD",
            # ansible.builtin.git's verify_commit and gpg_whitelist: the fetched commit (or the tag `version` names)
            # must carry a good signature, by one of these keys when the list is not empty.
            "verify_commit": app.get("verify_commit") is True,
            "gpg_whitelist": [_fingerprint(key) for key in app.get("gpg_whitelist") or []],
            "requirement": app.get("requirement"),
            "port": app.get("port"),
            "env": env,
            # Names and a digest only: these dicts are loop items and facts, which Ansible prints (a failed item at
            # any verbosity, every item at -v). The values are looked up by app_secret_env inside no_log tasks.
            "secret_keys": sorted(secret_env),
            "secret_digest": hashlib.sha256(json.dumps(secret_env, sort_keys=True).encode()).hexdigest(),
            "health_path": app.get("health_path") or "/",
            "health_status": int(app.get("health_status") or 200),
            "dirs": app_dirs(str(app.get("name")), apps_root),
            # With `front: true`: the front's address and the app's behind it (app_front); None: the app faces clients.
            "front": front,
        }
        listen = app_listen({**normal, "secret_env": secret_env})
        normal["bind"] = listen["bind"]
        normal["listen"] = listen["stream"]
        normal["health_url"] = listen["health_url"]
        result.append(normal)
    return result


def _env_errors(where: str, env: Mapping[str, Any], app: Mapping[str, Any], secret: bool = False) -> list[str]:
    """The role's own rules for the variables an operator sets: names, one-line values, what the unit sets itself.

    The runtime variables' values are gunicorn_conf.py's to judge (_runtime_errors). A secret_env value is never
    repeated: the message names the variable only, as no_log hides it everywhere else.
    """
    errors = []
    for key, value in env.items():
        text = env_text(value)
        label = f"{where}.{key}" + (" (value hidden)" if secret else f"={text!r}")
        if not ENV_KEY_RE.fullmatch(str(key)):
            errors.append(f"{where} key {key!r} is invalid: expected letters, digits and _ (not starting with a digit)")
        elif "\n" in text or "\r" in text or "\0" in text:
            errors.append(f"{where}.{key} is invalid: a value must be one line")
        elif key in runtime.UNIT_VARIABLES:
            errors.append(f"{label} is invalid: the unit sets {key} itself")
        elif runtime.LOADER_VARIABLE_RE.fullmatch(str(key)):
            errors.append(f"{label} is invalid: {key} steers how programs load, which no app setting may do")
        elif key in PATH_ENV and (os.path.isabs(text) or ".." in text.split("/")):
            errors.append(
                f"{label} is invalid: the path is outside the app directory (give it relative to the app dir)"
            )
    if app.get("port") is not None and "PORT" in env and _int(env_text(env["PORT"])) != _int(str(app["port"])):
        shown = " (value hidden)" if secret else f"={env_text(env['PORT'])!r}"
        errors.append(f"{where}.PORT{shown} contradicts port={app['port']!r}: set one of them")
    return errors


def _runtime_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """What gunicorn_conf.resolve refuses in the app's variables, each named where the operator set it."""
    secret_env = app.get("secret_env") or {}
    try:
        runtime.resolve(_operator_env(app), cores=1)
    except runtime.ConfigErrors as raised:
        lines = []
        for error in raised.errors:
            if error.name in secret_env:
                lines.append(f"{where}.secret_env.{error.name} (value hidden) is invalid: expected {error.expected}")
            elif error.name == "PORT" and app.get("port") is not None:
                lines.append(f"{where}.port={app['port']!r} is invalid: expected {error.expected}")
            else:
                lines.append(f"{where}.env.{error}")
        return lines
    return []


def _listen_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """What systemd's socket unit cannot hold: an inherited fd, or a host name where it needs an IP address."""
    listen = app_listen(app)
    label = f"{where}: BIND={listen['bind']!r}"
    if listen["bind"].startswith("fd://"):
        return [f"{label} is invalid: systemd passes the app its socket; use HOST:PORT or unix:PATH"]
    if listen["bind"].startswith("unix:"):
        # systemd (root) unlinks and binds this path: only the app's own place, never a file of the system's.
        allowed = posixpath.join(runtime.UNIX_SOCKET_DIR, f"{app.get('name')}.sock")
        if listen["bind"] != f"unix:{allowed}":
            return [f"{label} is invalid: a unix socket of this app must be unix:{allowed}"]
    if listen["host"] is not None:
        try:
            ipaddress.ip_address(listen["host"])
        except ValueError:
            return [f"{where}: the host {listen['host']!r} is invalid: systemd's socket listens on an IP address only"]
    return []


def _front_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """`front` and `front_port`: a switch, a port, and an address the front can take over (TCP, an IP address)."""
    front, port = app.get("front"), app.get("front_port")
    if front is not None and not isinstance(front, bool):
        return [f"{where}.front={front!r} is invalid: expected true or false"]
    if front is not True:
        return [f"{where}.front_port={port!r} is given but front is not true: nothing listens there"] if port else []
    try:
        found = app_front(app)
    except runtime.ConfigError:
        return [f"{where}.front_port={port!r} is invalid: expected a port number from 1 to 65535"]
    if found is None or found["port"] is None:
        bind = _operator_env(app).get("BIND")
        return [f"{where}: BIND={bind!r} is invalid with front: the front listens on TCP (give HOST:PORT or port)"]
    try:
        ipaddress.ip_address(found["host"])
    except ValueError:
        return [f"{where}: the host {found['host']!r} is invalid with front: HAProxy listens on an IP address only"]
    if found["backend_port"] == found["port"]:
        return [
            f"{where}.front_port={found['backend_port']} is invalid: the front itself listens on port {found['port']}"
        ]
    for label in ("env", "secret_env"):
        if "FORWARDED_ALLOW_IPS" in (app.get(label) or {}):
            return [
                f"{where}.{label}.FORWARDED_ALLOW_IPS is invalid with front: the front ({FRONT_HOST}) is the app's "
                "only peer, and the role trusts it itself"
            ]
    return []


# What the health check may fetch: a path on the host itself, no scheme, host or whitespace.
# An OpenPGP fingerprint as git prints it (VALIDSIG): v4 keys have 40 hex digits, v5 keys 64.
GPG_FINGERPRINT_RE = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")


def _field_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """The app's own fields that reach commands and URLs: the health path and the git version."""
    errors = []
    health_path = app.get("health_path")
    if health_path is not None and not HEALTH_PATH_RE.fullmatch(str(health_path)):
        errors.append(f"{where}.health_path={health_path!r} is invalid: expected a path on the host, such as /health")
    version = app.get("version")
    if version is not None and str(version).startswith("-"):
        errors.append(f"{where}.version={version!r} is invalid: expected a branch, tag or commit")
    errors += _signature_errors(where, app)
    return errors


def _signature_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """verify_commit and gpg_whitelist: booleans and fingerprints, and only for a git source."""
    verify = app.get("verify_commit")
    whitelist = app.get("gpg_whitelist")
    source = app.get("source") or ("local" if app.get("path") else "git" if app.get("repo") else "pip")
    if verify is not None and not isinstance(verify, bool):
        return [f"{where}.verify_commit={verify!r} is invalid: expected true or false"]
    if whitelist is not None and (
        not isinstance(whitelist, list) or not all(GPG_FINGERPRINT_RE.fullmatch(_fingerprint(k)) for k in whitelist)
    ):
        return [f"{where}.gpg_whitelist={whitelist!r} is invalid: expected a list of full key fingerprints (40 hex)"]
    if (verify or whitelist) and source != "git":
        return [f"{where}.verify_commit/gpg_whitelist is invalid for a {source} source: only git commits are signed"]
    if whitelist and not verify:
        return [f"{where}.gpg_whitelist is given but verify_commit is not true: nothing would check the signature"]
    return []


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
        requirement = str(app["requirement"])
        # One PEP 508 requirement (a direct reference `name @ URL` has spaces); a word starting with - is a pip option.
        if any(word.startswith("-") for word in requirement.split()):
            return [f"{where}.requirement={requirement!r} is invalid: expected one requirement, not pip options"]
        env = app.get("env") or {}
        if not (env.get("APP_MODULE") or env.get("MODULE_NAME")):
            return [f"{where}.env.APP_MODULE is missing: a pip-installed app has no main.py to find"]
    return []


def _taken_errors(
    where: str,
    name: str,
    home: str,
    accounts: Mapping[str, list[str]],
    groups: Mapping[str, list[str]],
    homes: Mapping[str, bool],
) -> list[str]:
    """What exists on the host under the app's name and is not the suite's: an account, a group, a directory.

    An app named `docker` or `shadow` would otherwise join that group, and `state: absent` would delete a directory
    the suite never made. The suite's own app is the account whose home is the app's directory; a directory without
    that account is the suite's only with the marker it writes there.
    """
    account = accounts.get(name)
    ours = account is not None and len(account) >= 5 and account[4] == home
    if account is not None and not ours:
        shown = account[4] if len(account) >= 5 else "?"
        return [
            f"{where}.name={name!r} collides with the existing account {name!r} (home {shown!r}, not {home!r}): "
            "choose another name"
        ]
    if name in groups and not ours:
        return [f"{where}.name={name!r} collides with the existing group {name!r}: choose another name"]
    if name in homes and not homes[name] and not ours:
        return [f"{where}: {home} exists and is not an app directory this suite made (no {APP_MARKER}): choose another"]
    return []


def app_input_errors(
    apps: Any,
    apps_root: str,
    accounts: Mapping[str, list[str]] | None = None,
    listeners: list[Mapping[str, Any]] | None = None,
    base_dir: str = ".",
    groups: Mapping[str, list[str]] | None = None,
    homes: list[str] | None = None,
    marked: list[str] | None = None,
) -> list[str]:
    """Return one line per invalid input (empty when the list can be applied); nothing here touches the host.

    accounts: getent passwd as Ansible returns it (name -> [password, uid, gid, gecos, home, shell]).
    listeners: the gunicorn_listeners module's list ({port, units}) of TCP ports in LISTEN state on the host.
    groups: getent group (name -> [password, gid, members]).
    homes: the names of the directories under the apps root; marked: those that hold the suite's marker.
    """
    if not isinstance(apps, list):
        return [f"app_list={apps!r} is invalid: expected a list of apps"]
    errors: list[str] = []
    names: dict[str, int] = {}
    ports: dict[int, str] = {}
    fronted = ""  # the app that has the host's front, once one has
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
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
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
        found = {home: home in (marked or []) for home in homes or []}
        taken = _taken_errors(where, name, app_dirs(name, apps_root)["home"], accounts or {}, groups or {}, found)
        if taken:
            errors += taken
            continue
        if state == "absent":
            continue
        errors += _source_errors(where, app, base_dir) + _field_errors(where, app)
        env = app.get("env") or {}
        secret_env = app.get("secret_env") or {}
        for label, mapping in (("env", env), ("secret_env", secret_env)):
            if not isinstance(mapping, Mapping):
                errors.append(f"{where}.{label}={mapping!r} is invalid: expected a mapping of variables")
        if not isinstance(env, Mapping) or not isinstance(secret_env, Mapping):
            continue
        # The role's rules first, then the runtime's (which assume sane names), then what systemd's socket can hold.
        found = _env_errors(f"{where}.env", env, app) + _env_errors(f"{where}.secret_env", secret_env, app, True)
        found = found or _runtime_errors(where, app) or _front_errors(where, app) or _listen_errors(where, app)
        if found:
            errors += found
            continue
        front = app_front(app)
        if front is not None and fronted:
            errors.append(f"{where}.front is invalid: app {fronted!r} has the front already (one front per host)")
            continue
        fronted = name if front is not None else fronted
        own = {f"gunicorn@{name}.service", f"gunicorn@{name}.socket", *leaving}
        # The app's own port, its metrics port (METRICS_BIND, its master's), and the front's: an app's unit may hold
        # the front's port (before its first run with the front, which moves it), and the front's HAProxy holds it
        # after.
        wanted = [(app_effective_port(app), own), (app_metrics_port(app), own)]
        if front is not None:
            wanted.append((front["port"], {*own, FRONT_UNIT}))
        errors += _port_errors(where, name, wanted, ports, listeners or [])
    return errors


def _port_errors(
    where: str,
    name: str,
    wanted: list[tuple[int | None, set[str]]],
    ports: dict[int, str],
    listeners: list[Mapping[str, Any]],
) -> list[str]:
    """Each TCP port an app needs: not another app's of this list, not held on the host by a unit not allowed it."""
    for port, allowed in wanted:
        if port is None:
            continue
        if port in ports:
            return [f"{where} port {port} is already used by app {ports[port]!r}: give each app its own port"]
        ports[port] = name
        for listener in listeners:
            if listener.get("port") != port:
                continue
            others = sorted(set(listener.get("units") or ["an unknown process"]) - allowed)
            if others:
                return [f"{where} port {port} is held by {', '.join(others)} on the host: choose another port"]
    return []


class FilterModule:
    """The app list's normalisation and input checks."""

    def filters(self) -> dict[str, Any]:
        """Map filter names to functions."""
        return {
            "app_normalize": app_normalize,
            "app_input_errors": app_input_errors,
        }
