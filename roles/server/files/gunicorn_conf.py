"""Gunicorn configuration that reads the image's environment variables when the service starts.

It is read at every start, never rendered at provision time, so an image baked on a 2-vCPU builder sizes itself to the
instance it boots on. Standard library only: it runs under whatever interpreter the app's venv has.

`python3 gunicorn_conf.py` prints the settings a start would use as one JSON line. An invalid value prints one line that
names the variable and the value and exits 2 (SystemExit, which Gunicorn does not catch, so no traceback hides it).
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# Gunicorn's own port for a BIND that names a host only (gunicorn.util.parse_address).
GUNICORN_DEFAULT_PORT = 8000

# Defaults of every variable this file reads. The README's table documents the same values.
DEFAULTS: dict[str, str] = {
    "WORKERS_PER_CORE": "2",
    "HOST": "0.0.0.0",
    "PORT": "80",
    "LOG_LEVEL": "info",
    "TIMEOUT": "120",
    "GRACEFUL_TIMEOUT": "120",
    # The image's keep-alive: above the 60 s idle timeout of cloud load balancers, which otherwise reuse a connection
    # the backend has just closed (sporadic 502s).
    "KEEP_ALIVE": "120",
    # Slow clients (slowloris): a request's header block must arrive within HEADER_TIMEOUT seconds of its first byte,
    # and its body may not stall for BODY_TIMEOUT seconds between two reads (HAProxy's and nginx's usual ranges).
    "HEADER_TIMEOUT": "10",
    "BODY_TIMEOUT": "30",
    # Connections one Meinheld worker holds at once (Gunicorn's worker_connections, whose own default is 1000): above
    # the half-sent requests one client can open, so they do not lock out everyone else until they time out.
    "WORKER_CONNECTIONS": "4096",
    # The image writes no access log; ACCESS_LOG=- turns one on (stdout, the journal), or names a file.
    "ACCESS_LOG": "off",
    # text: Gunicorn's access log format (its access_log_format setting). json: one JSON object per request and line
    # (gunicorn_jsonlog.py: time, app, method, path, query, status, duration, client), for a log shipper.
    "ACCESS_LOG_FORMAT": "text",
    "ERROR_LOG": "-",
    # The app is imported once per worker, as the image does: its import-time side effects (connections, threads,
    # random state) happen in each worker. PRELOAD=on imports it once in the master and shares it (see preload_app).
    "PRELOAD": "off",
    # The peers whose X-Forwarded-For and X-Forwarded-Proto are believed (the balancer's addresses or networks, comma
    # separated): their requests get the client address and scheme the balancer saw. Empty: nobody, every request is
    # its own peer's (Gunicorn's own default trusts 127.0.0.1, which on a host with a local proxy is anyone).
    "FORWARDED_ALLOW_IPS": "",
    # Where the master serves the app's Prometheus metrics (GET /metrics, gunicorn_metrics.py): HOST:PORT, or off.
    # Not the app's own address: whoever reaches it sees the request counts. Off, as the image has none.
    "METRICS_BIND": "off",
}

# Written by a master that preloaded the app into its runtime directory ($RUNTIME_DIRECTORY, which systemd empties at
# every start): the deploy role reads it to restart, not reload, such an app (a HUP would fork the old code again).
# plugins/module_utils/app_layout.py's PRELOADED_MARKER names the same file.
PRELOADED_MARKER = "preloaded"

# The words a switch variable (PRELOAD) takes, case-insensitive.
SWITCH_WORDS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}

# Below this KEEP_ALIVE a load balancer with the usual 60 s idle timeout may reuse a connection the backend closed.
MIN_SAFE_KEEP_ALIVE = 61

# Variables the unit sets for each start: neither an app's env nor a boot drop-in may set them (the launcher and the
# deploy role both refuse them, from this one list).
UNIT_VARIABLES = frozenset({"APP_DIR", "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "LOGS_DIRECTORY", "ENV_DROP_IN_DIR"})
# The dynamic loader's and the interpreter's own switches: an app's env must not steer how programs load.
LOADER_VARIABLE_RE = re.compile(r"LD_[A-Z0-9_]*|PYTHONHOME|PYTHONINSPECT|PYTHONSTARTUP|PYTHONEXECUTABLE|PYTHONUSERBASE")
# Where an app may put a unix socket (BIND=unix:PATH): beside the per-app runtime directories systemd makes.
UNIX_SOCKET_DIR = "/run/gunicorn"

# Upper bounds: beyond them a value is a typo, not a setting, and the seconds would overflow Meinheld's C int.
MAX_WORKERS_PER_CORE = 64.0
MAX_WORKER_COUNT = 1024
MAX_SECONDS = 86400
MAX_MEMORY_MIB = 1048576
# Meinheld's timer wheel holds timeouts up to 127 s; a longer request timeout would be cut to that without a word.
MAX_REQUEST_TIMEOUT = 120
# The unit's LimitNOFILE is 65536: a worker's connections plus its listening socket, log files and pipes fit under it.
MAX_WORKER_CONNECTIONS = 60000
# More trusted networks than any balancer setup needs: a bound on what each request is compared with.
MAX_TRUSTED_NETWORKS = 64
FORWARDED_SCHEMES = ("http", "https")

# ASCII only: int() and float() also take other scripts' digits and underscores ("٨٠", "8_0").
_UINT_RE = re.compile(r"[0-9]+")
_UFLOAT_RE = re.compile(r"([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_HOSTNAME_RE = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+", re.ASCII)


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot start with."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        self.name, self.value, self.expected = name, value, expected
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")


class ConfigErrors(ConfigError):
    """Every invalid variable of one environment; reads as the first, so a start still prints one line."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        first = errors[0]
        super().__init__(first.name, first.value, first.expected)


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """Return the variable's value, treating an empty value as unset (as `NAME=` in an env file means).

    The launcher (start.py) reads its variables with this function too: one rule for what "unset" means.
    """
    value = env.get(name, "").strip()
    return value or None


def _number(name: str, raw: str, *, whole: bool, minimum: float, maximum: float, expected: str) -> float:
    """Parse an ASCII decimal within [minimum, maximum] (minimum excluded when it is 0 and zero is not allowed)."""
    pattern = _UINT_RE if whole else _UFLOAT_RE
    if not pattern.fullmatch(raw):
        raise ConfigError(name, raw, expected)
    value = int(raw) if whole else float(raw)
    if not (math.isfinite(value) and minimum <= value <= maximum) or (not whole and value <= 0):
        raise ConfigError(name, raw, expected)
    return value


def _whole(env: Mapping[str, str], name: str, minimum: int, maximum: int) -> int | None:
    """An optional whole number from minimum to maximum; None when unset and the variable has no default."""
    raw = env_value(env, name) or DEFAULTS.get(name)
    if raw is None:
        return None
    expected = f"a whole number from {minimum} to {maximum}"
    return int(_number(name, raw, whole=True, minimum=minimum, maximum=maximum, expected=expected))


def _switch(env: Mapping[str, str], name: str) -> bool:
    """An on/off variable: on, off (also true/false, yes/no, 1/0), ASCII letters in any case; the default when unset."""
    raw = env_value(env, name) or DEFAULTS[name]
    value = SWITCH_WORDS.get(raw.lower()) if raw.isascii() else None
    if value is None:
        raise ConfigError(name, raw, "on or off (also true/false, yes/no, 1/0)")
    return value


def _port(name: str, raw: str) -> int:
    return int(_number(name, raw, whole=True, minimum=1, maximum=65535, expected="a port number from 1 to 65535"))


def _host(name: str, raw: str) -> str:
    """An IP address (IPv6 with or without brackets) or a DNS name; anything else (spaces, %, /) is refused."""
    bare = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if bare == raw and _HOSTNAME_RE.fullmatch(raw):
        return raw
    raise ConfigError(name, raw, "an IP address or a host name")


def _networks(env: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated list of IP addresses or networks (CIDR), ASCII only, at most MAX_TRUSTED_NETWORKS; "" none.

    "*" (Gunicorn's "trust everyone") is refused: a server on the internet that believes every peer's
    X-Forwarded-For lets any client choose the address the app logs and rate-limits.
    """
    raw = env_value(env, name) or DEFAULTS[name]
    if not raw:
        return []
    expected = f"IP addresses or networks (10.0.0.0/8), comma separated, at most {MAX_TRUSTED_NETWORKS}; not *"
    items = [item.strip() for item in raw.split(",")]
    if not raw.isascii() or len(items) > MAX_TRUSTED_NETWORKS:
        raise ConfigError(name, raw, expected)
    networks = []
    for item in items:
        if not re.fullmatch(r"[0-9A-Fa-f.:]+(/[0-9]{1,3})?", item):
            raise ConfigError(name, raw, expected)
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(name, raw, expected) from None
    return list(dict.fromkeys(networks))


def _address(host: str, port: int) -> str:
    """HOST:PORT as Gunicorn and systemd write it: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def resolve_bind(env: Mapping[str, str]) -> dict[str, Any]:
    """Where the service listens: {bind, host, port} for TCP, {bind, host: None, port: None} for unix: and fd://.

    BIND wins over HOST and PORT. A BIND with a host and no port listens on Gunicorn's default port (8000), and the
    resolved bind names that port, so everything that reads it (socket, health check, port checks) agrees.
    """
    bind = env_value(env, "BIND")
    if bind is None:
        host = _host("HOST", env_value(env, "HOST") or DEFAULTS["HOST"])
        port = _port("PORT", env_value(env, "PORT") or DEFAULTS["PORT"])
        return {"bind": _address(host, port), "host": host, "port": port}
    expected = "HOST:PORT, [IPV6]:PORT, HOST, unix:PATH or fd://N, with a port from 1 to 65535"
    if bind.startswith("unix:"):
        if len(bind) == len("unix:"):
            raise ConfigError("BIND", bind, expected)
        return {"bind": bind, "host": None, "port": None}
    if bind.startswith("fd://"):
        if not _UINT_RE.fullmatch(bind[len("fd://") :]):
            raise ConfigError("BIND", bind, expected)
        return {"bind": bind, "host": None, "port": None}
    host, port = _tcp_address("BIND", bind, expected)
    port = GUNICORN_DEFAULT_PORT if port is None else port
    return {"bind": _address(host, port), "host": host, "port": port}


def _tcp_address(name: str, raw: str, expected: str) -> tuple[str, int | None]:
    """HOST:PORT, [IPV6]:PORT, HOST or [IPV6] as (host, port or None); anything else raises naming NAME and RAW."""
    if raw.startswith("["):
        host_part, bracket, rest = raw.partition("]")
        host_part += bracket
        if not bracket or (rest and not rest.startswith(":")):
            raise ConfigError(name, raw, expected)
        port_part = rest[1:] if rest else None
    elif raw.count(":") == 1:
        host_part, _, port_part = raw.partition(":")
    elif ":" in raw:
        raise ConfigError(name, raw, expected + " (an IPv6 address goes in brackets)")
    else:
        host_part, port_part = raw, None
    try:
        return _host(name, host_part), None if port_part is None else _port(name, port_part)
    except ConfigError:
        raise ConfigError(name, raw, expected) from None


def _metrics_bind(env: Mapping[str, str], app_port: int | None) -> dict[str, Any] | None:
    """METRICS_BIND as {host, port, bind}, None when off: TCP only, never the port the app listens on."""
    raw = env_value(env, "METRICS_BIND") or DEFAULTS["METRICS_BIND"]
    if raw.lower() == "off":
        return None
    expected = "off, HOST:PORT or [IPV6]:PORT with a port from 1 to 65535, not the app's own port"
    host, port = _tcp_address("METRICS_BIND", raw, expected)
    if port is None or port == app_port:
        raise ConfigError("METRICS_BIND", raw, expected)
    return {"host": host, "port": port, "bind": _address(host, port)}


def _access_log_format(env: Mapping[str, str], access_log: str) -> str:
    """ACCESS_LOG_FORMAT: text or json (any case); json needs an access log to write to."""
    raw = env_value(env, "ACCESS_LOG_FORMAT") or DEFAULTS["ACCESS_LOG_FORMAT"]
    if raw.lower() not in ("text", "json") or (raw.lower() == "json" and access_log.lower() == "off"):
        raise ConfigError("ACCESS_LOG_FORMAT", raw, "text, or json with ACCESS_LOG set (- for the journal, or a file)")
    return raw.lower()


def _loglevel(env: Mapping[str, str]) -> str:
    raw = env_value(env, "LOG_LEVEL") or DEFAULTS["LOG_LEVEL"]
    if raw.lower() not in LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", raw, "one of " + ", ".join(LOG_LEVELS))
    return raw.lower()


def _own_cgroup_dirs(root: Path, proc_cgroup: Path, controller: str | None) -> list[Path]:
    """List this process's cgroup directory and its ancestors, innermost first.

    controller=None selects the unified (v2) hierarchy; a name selects the v1 hierarchy that carries it.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        names = controllers.split(",") if controllers else []
        if (controller is None and not names) or controller in names:
            break
    else:
        return []
    if controller is None:
        mount = root
    else:
        candidates = [root / controllers, root / controller, root / "cpu,cpuacct"]
        mount = next((c for c in candidates if c.is_dir()), root / controller)
    relative = Path(path.lstrip("/"))
    # dict.fromkeys drops the repeat of the mount root that "/" yields, keeping innermost-first order.
    return list(dict.fromkeys([mount / relative, *[mount / parent for parent in relative.parents]]))


def cgroup_cpu_limit(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> float | None:
    """Return the tightest CPU quota (in CPUs) over this process's cgroup and its ancestors, or None when unlimited.

    systemd's CPUQuota= and container runtimes' --cpus both land here; the host's CPU count does not reflect them.
    """
    limits: list[float] = []
    for directory in _own_cgroup_dirs(root, proc_cgroup, None):
        try:
            quota, period = (directory / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            continue
        if quota != "max" and int(period) > 0:
            limits.append(int(quota) / int(period))
    for directory in _own_cgroup_dirs(root, proc_cgroup, "cpu"):
        try:
            quota_us = int((directory / "cpu.cfs_quota_us").read_text())
            period_us = int((directory / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        if quota_us > 0 and period_us > 0:
            limits.append(quota_us / period_us)
    return min(limits) if limits else None


def usable_cores(
    affinity: Callable[[], int] = lambda: len(os.sched_getaffinity(0)),
    cpu_limit: Callable[[], float | None] = cgroup_cpu_limit,
) -> int:
    """CPUs the service may really run on: its affinity, bounded by a cgroup quota rounded up; never below 1."""
    cores = affinity()
    limit = cpu_limit()
    if limit is not None:
        cores = min(cores, math.ceil(limit))
    return max(1, cores)


def _control_socket(env: Mapping[str, str]) -> str | None:
    """Place Gunicorn's control socket in the unit's RuntimeDirectory, never under a home the service cannot write."""
    raw = env_value(env, "CONTROL_SOCKET")
    if raw is not None:
        return None if raw.lower() == "off" else raw
    runtime_dir = env_value(env, "RUNTIME_DIRECTORY")
    return os.path.join(runtime_dir.split(":")[0], "gunicorn.ctl") if runtime_dir else None


def resolve(env: Mapping[str, str], cores: int) -> dict[str, Any]:
    """Turn the environment into Gunicorn settings: the one statement of the runtime variables' rules.

    Pure (reads only its arguments), so the deploy role checks an app's variables on the controller with this same
    function before the host changes. Raises ConfigErrors listing every invalid variable; it reads as the first.
    """
    errors: list[ConfigError] = []

    def checked(parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except ConfigError as error:
            errors.append(error)
            return None

    workers_per_core = checked(
        lambda: _number(
            "WORKERS_PER_CORE",
            env_value(env, "WORKERS_PER_CORE") or DEFAULTS["WORKERS_PER_CORE"],
            whole=False,
            minimum=0,
            maximum=MAX_WORKERS_PER_CORE,
            expected=f"a number greater than 0, at most {MAX_WORKERS_PER_CORE:g}",
        )
    )
    web_concurrency = checked(lambda: _whole(env, "WEB_CONCURRENCY", 1, MAX_WORKER_COUNT))
    max_workers = checked(lambda: _whole(env, "MAX_WORKERS", 1, MAX_WORKER_COUNT))
    listen = checked(lambda: resolve_bind(env)) or {"bind": None, "host": None, "port": None}
    loglevel = checked(lambda: _loglevel(env))
    timeout = checked(lambda: _whole(env, "TIMEOUT", 0, MAX_SECONDS))
    graceful_timeout = checked(lambda: _whole(env, "GRACEFUL_TIMEOUT", 0, MAX_SECONDS))
    keepalive = checked(lambda: _whole(env, "KEEP_ALIVE", 0, MAX_SECONDS))
    max_memory = checked(lambda: _whole(env, "WORKER_MAX_MEMORY", 0, MAX_MEMORY_MIB))
    header_timeout = checked(lambda: _whole(env, "HEADER_TIMEOUT", 1, MAX_REQUEST_TIMEOUT))
    body_timeout = checked(lambda: _whole(env, "BODY_TIMEOUT", 1, MAX_REQUEST_TIMEOUT))
    worker_connections = checked(lambda: _whole(env, "WORKER_CONNECTIONS", 1, MAX_WORKER_CONNECTIONS))
    preload = checked(lambda: _switch(env, "PRELOAD"))
    trusted = checked(lambda: _networks(env, "FORWARDED_ALLOW_IPS"))
    metrics = checked(lambda: _metrics_bind(env, listen["port"]))
    access_log = env_value(env, "ACCESS_LOG") or DEFAULTS["ACCESS_LOG"]
    access_log_format = checked(lambda: _access_log_format(env, access_log))
    if errors:
        raise ConfigErrors(errors)
    if web_concurrency is not None:
        workers = web_concurrency
    else:
        workers = max(1, int(cores * workers_per_core))
        if max_workers is not None:
            workers = min(workers, max_workers)
    warnings = []
    if keepalive < MIN_SAFE_KEEP_ALIVE:
        warnings.append(
            f"KEEP_ALIVE={keepalive} is below {MIN_SAFE_KEEP_ALIVE}: behind a load balancer with a 60 s idle timeout, "
            "it may reuse a connection this server has closed (sporadic 502s)"
        )
    return {
        "workers": workers,
        "cores": cores,
        "workers_per_core": workers_per_core,
        "web_concurrency": web_concurrency,
        "max_workers": max_workers,
        **listen,
        "loglevel": loglevel,
        "timeout": timeout,
        "graceful_timeout": graceful_timeout,
        "keepalive": keepalive,
        "header_timeout": header_timeout,
        "body_timeout": body_timeout,
        "worker_connections": worker_connections,
        "accesslog": None if access_log.lower() == "off" else access_log,
        "access_log_format": access_log_format,
        "errorlog": env_value(env, "ERROR_LOG") or DEFAULTS["ERROR_LOG"],
        "control_socket": _control_socket(env),
        "worker_max_memory_mib": max_memory or None,
        "preload_app": preload,
        "forwarded_allow_ips": trusted,
        "metrics": metrics,
        "warnings": warnings,
    }


def read_env_file(text: str) -> dict[str, str]:
    """Variables of an env file in systemd's EnvironmentFile= syntax, read without a shell.

    KEY=VALUE or KEY="VALUE" (backslash escapes the next character, as the app role writes its files) or KEY='VALUE';
    blank lines and lines starting with # or ; are comments. Sourcing the file with sh instead would run whatever an
    app's value smuggles in, as whoever reads it.
    """
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        value, quote, escaped = [], raw[:1] if raw[:1] in "\"'" else "", False
        for char in raw[1:] if quote else raw:
            if escaped:
                value.append(char)
                escaped = False
            elif char == "\\" and quote != "'":
                escaped = True
            elif quote and char == quote:
                break
            else:
                value.append(char)
        env[key.strip()] = "".join(value) if quote else "".join(value).strip()
    return env


def sibling(name: str) -> Any:
    """The module NAME.py from this file's directory: Gunicorn runs this file by path, not from a package."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve_or_exit(env: Mapping[str, str]) -> dict[str, Any]:
    try:
        return resolve(env, usable_cores())
    except ConfigError as error:
        print(f"gunicorn_conf: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


# Gunicorn executes this file as the module "__config__" and reads the names below. Imported under any other name (the
# deploy role's checks, tests) or run as a script, it resolves nothing at import.
if __name__ == "__config__":
    settings = _resolve_or_exit(os.environ)
    workers = settings["workers"]
    bind = [settings["bind"]]
    loglevel = settings["loglevel"]
    timeout = settings["timeout"]
    graceful_timeout = settings["graceful_timeout"]
    keepalive = settings["keepalive"]
    worker_connections = settings["worker_connections"]
    preload_app = settings["preload_app"]
    if preload_app:
        # No collection while the master imports the app: a collection then frees objects among the live ones, and
        # the holes it leaves get filled in each worker, copying those pages. pre_fork freezes what the import made.
        gc.disable()
    # Gunicorn's own reading of X-Forwarded-Proto (its workers other than Meinheld's) trusts the same peers as
    # trust_forwarded below, and nobody when FORWARDED_ALLOW_IPS is empty (its default would be 127.0.0.1).
    forwarded_allow_ips = ",".join(settings["forwarded_allow_ips"])
    # A JSON access log is written by the worker's wrapper (post_worker_init), not by Gunicorn or Meinheld; its module
    # is loaded here, in the master, so every worker forked from it has it.
    accesslog = settings["accesslog"] if settings["access_log_format"] == "text" else None
    if settings["access_log_format"] == "json":
        jsonlog = sibling("gunicorn_jsonlog")
    errorlog = settings["errorlog"]
    if settings["control_socket"] is None:
        control_socket_disable = True
    else:
        control_socket = settings["control_socket"]


def on_starting(server: Any) -> None:
    """Log the resolved settings once per start, so the journal says what the service sized itself to.

    Then say in the runtime directory whether this master preloads the app (mark_preloaded).
    """
    server.log.info("resolved settings: %s", json.dumps(settings, sort_keys=True))
    for warning in settings["warnings"]:
        server.log.warning("%s", warning)
    mark_preloaded(os.environ.get("RUNTIME_DIRECTORY"), settings["preload_app"])
    if settings["metrics"]:
        serve_metrics(server, settings["metrics"], os.environ.get("RUNTIME_DIRECTORY"))


def app_name(runtime_dir: str | None) -> str:
    """The app's name for metrics and JSON logs: the unit's instance, the last part of /run/gunicorn/NAME."""
    return Path(runtime_dir.split(":")[0]).name if runtime_dir else "app"


def serve_metrics(server: Any, metrics: dict[str, Any], runtime_dir: str | None) -> None:
    """Start the master's metrics endpoint on METRICS_BIND; a bind that fails stops the start with one line.

    Slots for twice the workers: a reload's new workers start before its old ones exit.
    """
    try:
        sibling("gunicorn_metrics").install(
            server, app_name(runtime_dir), 2 * settings["workers"] + 8, metrics["host"], metrics["port"]
        )
    except OSError as error:
        print(f"gunicorn_conf: METRICS_BIND={metrics['bind']} cannot be served: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def mark_preloaded(runtime_dir: str | None, preload: bool) -> None:
    """Write PRELOADED_MARKER into the unit's runtime directory when this master preloads, remove it when not.

    Only a start writes it, never a HUP: a master that preloaded keeps the app it imported whatever a reload reads.
    """
    if not runtime_dir:
        return  # not under the roles' unit: nobody plans its reloads
    marker = Path(runtime_dir.split(":")[0]) / PRELOADED_MARKER
    if preload:
        marker.write_text("PRELOAD=on: this master imported the app; a reload forks the same code\n", encoding="utf-8")
    else:
        marker.unlink(missing_ok=True)


def pre_fork(server: Any, worker: Any) -> None:
    """With PRELOAD on, freeze what the master holds (the preloaded app) before each fork.

    gc.freeze() moves it into the collector's permanent generation: a worker's collections then never touch, and so
    never copy, the pages it inherited. Gunicorn calls this in the master before every fork, the first after the app
    was preloaded and also after a HUP (which runs this file again, collection off). Collection goes back on for the
    master and the worker. Workers re-seed `random` themselves after the fork (CPython's own at-fork hook and
    Gunicorn's worker init).
    """
    if settings["preload_app"]:
        gc.freeze()
        gc.enable()
    if registry := getattr(server, "wsgiops_metrics", None):
        registry.assign(worker)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, after a worker exited: its counts join the totals, its slot is free again."""
    if registry := getattr(server, "wsgiops_metrics", None):
        registry.release(worker)


def resident_mib(statm: Path = Path("/proc/self/statm")) -> float:
    """Resident set size of the calling process in MiB (the second field of statm, in pages)."""
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def retire_when_over(worker: Any, limit_mib: int, rss: Callable[[], float] = resident_mib) -> Callable[[], None]:
    """Wrap the Meinheld worker's watchdog so a worker above WORKER_MAX_MEMORY retires itself gracefully.

    Meinheld's loop calls the watchdog about once a second, so the check costs nothing per request. Retiring is what
    max_requests does: stop accepting, finish the requests in flight, exit; the arbiter forks a fresh worker. The host
    never swaps for a leaking app, and no client but the ones on the leaking worker notices.
    """
    original = worker.watchdog

    def watchdog() -> None:
        original()
        if worker.alive and (used := rss()) > limit_mib:
            worker.log.warning(
                "worker %s uses %.0f MiB, above WORKER_MAX_MEMORY=%s: retiring it", worker.pid, used, limit_mib
            )
            worker.alive = False
            from meinheld import server as meinheld_server  # only a Meinheld worker gets here

            meinheld_server.stop(int(worker.cfg.graceful_timeout))

    return watchdog


def is_meinheld(worker: Any) -> bool:
    """Meinheld's worker is the one with a watchdog its loop calls; other classes ignore what only it reads."""
    return hasattr(worker, "watchdog")


def set_request_timeouts(worker: Any, header: int, body: int) -> None:
    """Hand HEADER_TIMEOUT and BODY_TIMEOUT to a Meinheld worker's loop, which Gunicorn has no settings for."""
    if not is_meinheld(worker):
        return  # another worker class: Gunicorn's own timeout and keepalive rule its connections
    from meinheld import server as meinheld_server

    if hasattr(meinheld_server, "set_request_timeouts"):
        meinheld_server.set_request_timeouts(header, body)
    else:
        worker.log.warning("this Meinheld build has no request timeouts: HEADER_TIMEOUT and BODY_TIMEOUT are ignored")


def trust_forwarded(app: Callable[..., Any], trusted: list[str]) -> Callable[..., Any]:
    """Wrap APP so a request from a TRUSTED peer carries the client address and scheme its proxy saw.

    From such a peer, REMOTE_ADDR becomes the last address of X-Forwarded-For (the one the proxy itself added:
    whatever a client sent comes before it) and wsgi.url_scheme becomes X-Forwarded-Proto when that is http or https.
    From any other peer both headers are left for the app to see and nothing is believed. A value that is not an IP
    address changes nothing. Gunicorn's own forwarded_allow_ips sets the scheme for its workers only, and never
    REMOTE_ADDR; this one rule serves every worker class.
    """
    networks = [ipaddress.ip_network(network) for network in trusted]

    def is_trusted(peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False  # a UNIX socket's peer has no address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in networks)

    def forwarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if is_trusted(environ.get("REMOTE_ADDR", "")):
            client = environ.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
            with contextlib.suppress(ValueError):
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(client if client.isascii() else ""))
            scheme = environ.get("HTTP_X_FORWARDED_PROTO", "").strip().lower()
            if scheme in FORWARDED_SCHEMES:
                environ["wsgi.url_scheme"] = scheme
        return app(environ, start_response)

    return forwarded


def post_worker_init(worker: Any) -> None:
    """Arm the request timeouts and the memory limit; Meinheld's loop looks up worker.watchdog after this returns.

    With FORWARDED_ALLOW_IPS, the worker's app is wrapped to believe those peers' forwarding headers (the worker calls
    worker.wsgi per request, the wrapper is looked up once).
    """
    if settings["forwarded_allow_ips"]:
        worker.wsgi = trust_forwarded(worker.wsgi, settings["forwarded_allow_ips"])
    if count_requests := getattr(worker, "wsgiops_count_requests", None):
        worker.wsgi = count_requests(worker.wsgi)
    if settings["access_log_format"] == "json":
        fd = jsonlog.open_log(settings["accesslog"])
        worker.wsgi = jsonlog.log_requests(worker.wsgi, fd, app_name(os.environ.get("RUNTIME_DIRECTORY")))
    set_request_timeouts(worker, settings["header_timeout"], settings["body_timeout"])
    limit = settings["worker_max_memory_mib"]
    if limit is None:
        return
    if not is_meinheld(worker):
        worker.log.warning("WORKER_MAX_MEMORY=%s is enforced for Meinheld workers only; this worker ignores it", limit)
        return
    worker.watchdog = retire_when_over(worker, limit)


def main(args: list[str]) -> None:
    """`python3 gunicorn_conf.py [--env-file FILE]`: print the settings a start would use as one JSON line.

    With --env-file, only that file's variables count (as the unit sees them), read without a shell: the app role
    validates every env file this way (`python3 -I`, so nothing of the app's is imported) before it replaces one.
    """
    env: Mapping[str, str] = os.environ
    if args[:1] == ["--env-file"] and len(args) == 2:
        env = read_env_file(Path(args[1]).read_text(encoding="utf-8"))
    elif args:
        print("usage: gunicorn_conf.py [--env-file FILE]", file=sys.stderr)
        raise SystemExit(2)
    resolved = _resolve_or_exit(env)
    for warning in resolved["warnings"]:
        print(f"gunicorn_conf: warning: {warning}", file=sys.stderr)
    print(json.dumps(resolved, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
