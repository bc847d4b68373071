"""Filters of the app role: normalise the operator's app list and name every invalid input before the host is touched.

They run on the controller, so the checks of a local source directory see the controller's file system. The runtime
variables are checked by gunicorn_conf.py's own resolve() (the server role's runtime file, loaded from this collection),
so a value the service would refuse is refused here first, while the previous version is still serving, and the
socket address, the health-check URL and the port checks all read the bind that function resolves.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import ipaddress
import json
import os
import posixpath
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

# systemd instance names allow more, user names allow less: this is what both accept (useradd's limit is 32).
NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
ENV_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SOURCES = ("local", "git", "pip")
STATES = ("present", "absent")
# Variables that name a file the launcher resolves relative to the app directory.
PATH_ENV = ("GUNICORN_CONF", "PRE_START_PATH")
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
PENDING_STATES = {"socket": "restarted", "restart": "restarted", "reload": "reloaded"}
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


def app_runtime_env(app: Mapping[str, Any]) -> dict[str, str]:
    """The variables an app's env file carries (env, secret_env, and `port` as PORT), as the service will read them."""
    env = {str(key): _text(value) for key, value in (app.get("env") or {}).items()}
    env.update({str(key): _text(value) for key, value in (app.get("secret_env") or {}).items()})
    if app.get("port") is not None:
        env["PORT"] = _text(app["port"])
    return env


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
    text = json.dumps([_text(part) if part is not None else "" for part in parts])
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


def app_secret_env(apps: list[Mapping[str, Any]], name: str) -> dict[str, str]:
    """The secret_env of the app NAME of the operator's app list, as the env file writes it; for no_log tasks only."""
    for app in apps or []:
        if isinstance(app, Mapping) and app.get("name") == name:
            return {str(key): _text(value) for key, value in (app.get("secret_env") or {}).items()}
    return {}


def app_redact(text: str, apps: list[Mapping[str, Any]]) -> str:
    """The text with every secret_env value of the app list replaced by ***.

    For what the role shows on a failure (the launcher's words, the journal's last lines), which the app itself may
    have filled with its secrets.
    """
    for app in apps or []:
        if isinstance(app, Mapping):
            for value in sorted(app_secret_env(apps, str(app.get("name"))).values(), key=len, reverse=True):
                if value:
                    text = text.replace(value, "***")
    return text


def _fingerprint(key: Any) -> str:
    """A fingerprint as git prints it: upper-case hex without spaces."""
    return "".join(str(key).split()).upper()


def app_repo_public(url: Any) -> str:
    """The repository URL without credentials: https://user:token@host/x.git -> https://host/x.git.

    git stores the URL a clone was made from in .git/config, in the app's directory; with the credentials in it, the
    app's own user (and anything reading the clone) could read the token. Only http(s) URLs carry a password there;
    an ssh or scp-like URL (git@host:org/x.git) names a user, no secret, and stays as it is.
    """
    text = str(url)
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return text
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def app_git_environment(apps: list[Mapping[str, Any]], name: str) -> dict[str, str]:
    """For a no_log git task of the app NAME: git's environment that gives it the credentials of the repo URL.

    The clone is made from the public URL (app_repo_public: the normalised item's repo, what .git/config keeps);
    this environment tells git, for this run only, to fetch that URL through the one with credentials
    (url.<with credentials>.insteadOf = <public>, as GIT_CONFIG_COUNT/KEY/VALUE, git >= 2.31). Looked up from the
    operator's app_list, like secret_env, so the token never enters a loop item or a fact. Empty when the URL has no
    credentials.
    """
    for app in apps or []:
        if isinstance(app, Mapping) and app.get("name") == name and app.get("repo"):
            repo = str(app["repo"])
            public = app_repo_public(repo)
            if public != repo:
                return {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": f"url.{repo}.insteadOf",
                    "GIT_CONFIG_VALUE_0": public,
                }
    return {}


def app_normalize(apps: list[Mapping[str, Any]], base_dir: str, apps_root: str) -> list[dict[str, Any]]:
    """Fill every optional field, so tasks and templates never need a default() of their own.

    Each app also carries `dirs`, its directories under apps_root (see app_dirs). apps_root is the server role's
    `server_stack.apps_root`, passed in rather than defaulted here, so the layout's root has one spelling.
    """
    result = []
    for app in apps or []:
        env = {str(key): _text(value) for key, value in (app.get("env") or {}).items()}
        secret_env = app_secret_env(apps, str(app.get("name")))
        if app.get("port") is not None:
            env["PORT"] = _text(app["port"])
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
        text = _text(value)
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
    if app.get("port") is not None and "PORT" in env and _int(_text(env["PORT"])) != _int(str(app["port"])):
        shown = " (value hidden)" if secret else f"={_text(env['PORT'])!r}"
        errors.append(f"{where}.PORT{shown} contradicts port={app['port']!r}: set one of them")
    return errors


def _runtime_errors(where: str, app: Mapping[str, Any]) -> list[str]:
    """What gunicorn_conf.resolve refuses in the app's variables, each named where the operator set it."""
    secret_env = app.get("secret_env") or {}
    try:
        runtime.resolve(app_runtime_env(app), cores=1)
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
        found = found or _runtime_errors(where, app) or _listen_errors(where, app)
        if found:
            errors += found
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


def app_venv_moving(link_results: list[Mapping[str, Any]], venvs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The apps whose `venv` link (a stat result per app) does not name the venv this run deploys.

    That is a first deploy, a venv of a release before 1.1.0 (a directory, not a link), or another set of requirements.
    """
    return [
        result["item"]["name"]
        for result in link_results
        if result["stat"].get("lnk_target") != venvs[result["item"]["name"]]["link_target"]
    ]


def app_plan(
    apps: list[Mapping[str, Any]], changed: Mapping[str, list[str]], stack: Mapping[str, Any]
) -> list[dict[str, str]]:
    """What each running app needs after this run's changes: one action, the strongest that covers them all.

    changed: app names per kind of change: started (its first start, in this run), socket (where it listens), env
    (its settings), venv (its packages: a new venv, which the running master cannot load), code (its link moved), and
    the restarts and reloads an earlier run recorded and did not do (pending_socket, pending_restart, pending_reload).
    stack: the server role's server_stack (resocket_all, restart_all, reload_all: its unit or runtime files changed).
    A socket restart restarts the instance too (the service Requires= it), a restart covers a reload, and an instance
    started for the first time in this run already runs everything new. Returns [{name, unit, state, why, kind}], in
    app order; kind names the record a stopped run leaves (PENDING_PREFIX + kind).
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
        unit = "socket" if kind == "socket" else "service"
        plan.append(
            {"name": name, "unit": f"gunicorn@{name}.{unit}", "state": PENDING_STATES[kind], "why": why, "kind": kind}
        )
    return plan


def _pending_kind(path: str) -> str | None:
    """The kind (socket, restart or reload) of a pending record at PATH; None for any other file."""
    base = posixpath.basename(path)
    kind = base.removeprefix(PENDING_PREFIX)
    return kind if base.startswith(PENDING_PREFIX) and kind in PENDING_STATES else None


def app_pending(find_results: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The restarts and reloads earlier runs recorded and did not do, from a find of PENDING_PREFIX* per app.

    Returns {pending_socket: [names], pending_restart: [names], pending_reload: [names]}, app_plan's keys.
    """
    found: dict[str, list[str]] = {f"pending_{kind}": [] for kind in PENDING_STATES}
    for result in find_results:
        for entry in result.get("files") or []:
            kind = _pending_kind(entry["path"])
            if kind:
                found[f"pending_{kind}"].append(result["item"]["name"])
    return found


def app_record_paths(app: Mapping[str, Any], release: str) -> dict[str, str]:
    """Where RELEASE of a normalised app keeps its records: {venv, env, listen} (see RELEASE_VENV and friends)."""
    where = app_release_path(app, release)
    return {
        "venv": posixpath.join(where, RELEASE_VENV),
        "env": posixpath.join(where, RELEASE_ENV),
        "listen": posixpath.join(where, RELEASE_LISTEN),
    }


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
        entry["path"] for result in find_results for entry in result.get("files") or [] if _pending_kind(entry["path"])
    )


def app_pending_path(app: Mapping[str, Any], kind: str) -> str:
    """Where a normalised app's record of a pending KIND (socket, restart or reload) lives."""
    if kind not in PENDING_STATES:
        raise ValueError(f"no pending record of kind {kind!r}")
    return posixpath.join(app["dirs"]["home"], PENDING_PREFIX + kind)


def app_pending_paths(apps: list[Mapping[str, Any]]) -> list[str]:
    """Every pending record the apps may have: what a run removes once it applied its plan."""
    return [app_pending_path(app, kind) for app in apps for kind in PENDING_STATES]


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
            "app_link_target": app_link_target,
            "app_release_path": app_release_path,
            "app_moving": app_moving,
            "app_stale_releases": app_stale_releases,
            "app_units_to_stop": app_units_to_stop,
            "app_plan": app_plan,
            "app_pending": app_pending,
            "app_pending_paths": app_pending_paths,
            "app_pending_path": app_pending_path,
            "app_pending_found": app_pending_found,
            "app_record_paths": app_record_paths,
            "app_serving_unrecorded": app_serving_unrecorded,
            "app_unused_venvs": app_unused_venvs,
            "app_venv_key": app_venv_key,
            "app_venv": app_venv,
            "app_venv_from_link": app_venv_from_link,
            "app_venv_moving": app_venv_moving,
            "app_dirs": app_dirs,
            "app_secret_env": app_secret_env,
            "app_repo_public": app_repo_public,
            "app_git_environment": app_git_environment,
            "app_redact": app_redact,
        }
