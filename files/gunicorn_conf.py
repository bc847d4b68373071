"""Gunicorn configuration that reads the image's environment variables when the service starts.

It is read at every start, never rendered at provision time, so an image baked on a 2-vCPU builder sizes itself to the
instance it boots on. Standard library only: it runs under whatever interpreter the app's venv has.

`python3 gunicorn_conf.py` prints the settings a start would use as one JSON line. An invalid value prints one line that
names the variable and the value and exits 2 (SystemExit, which Gunicorn does not catch, so no traceback hides it).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")

# Defaults of every variable this file reads. DESIGN.md's table and the role READMEs document the same values.
DEFAULTS: dict[str, str] = {
    "WORKERS_PER_CORE": "2",
    "HOST": "0.0.0.0",
    "PORT": "80",
    "LOG_LEVEL": "info",
    "TIMEOUT": "120",
    "GRACEFUL_TIMEOUT": "120",
    "KEEP_ALIVE": "5",
    "ACCESS_LOG": "-",
    "ERROR_LOG": "-",
}


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot start with."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")


def _get(env: Mapping[str, str], name: str) -> str | None:
    """Return the variable's value, treating an empty value as unset (as `NAME=` in an env file means)."""
    value = env.get(name, "").strip()
    return value or None


def _positive_float(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name) or DEFAULTS[name]
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, raw, "a number greater than 0") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(name, raw, "a number greater than 0")
    return value


def _positive_int(env: Mapping[str, str], name: str, *, allow_zero: bool = False) -> int | None:
    """Parse an optional whole number; None when unset and the variable has no default."""
    raw = _get(env, name) or DEFAULTS.get(name)
    if raw is None:
        return None
    expected = "a whole number >= 0" if allow_zero else "a whole number greater than 0"
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, raw, expected) from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(name, raw, expected)
    return value


def _port(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, raw, "a port number from 1 to 65535") from None
    if not 1 <= value <= 65535:
        raise ConfigError(name, raw, "a port number from 1 to 65535")
    return value


def _bind(env: Mapping[str, str], host: str, port: int) -> str:
    """BIND wins over HOST and PORT; a TCP BIND that names a port must name a valid one."""
    bind = _get(env, "BIND")
    if bind is None:
        return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
    if bind.startswith(("unix:", "fd://")):
        return bind
    _, sep, bind_port = bind.rpartition(":")
    if not sep or bind_port.endswith("]"):  # a bare host or IPv6 literal: Gunicorn adds its default port
        return bind
    try:
        _port("BIND", bind_port)
    except ConfigError:
        raise ConfigError("BIND", bind, "HOST:PORT, unix:PATH or fd://N, with a port from 1 to 65535") from None
    return bind


def _loglevel(env: Mapping[str, str]) -> str:
    raw = _get(env, "LOG_LEVEL") or DEFAULTS["LOG_LEVEL"]
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
    raw = _get(env, "CONTROL_SOCKET")
    if raw is not None:
        return None if raw.lower() == "off" else raw
    runtime_dir = _get(env, "RUNTIME_DIRECTORY")
    return os.path.join(runtime_dir.split(":")[0], "gunicorn.ctl") if runtime_dir else None


def resolve(env: Mapping[str, str], cores: int) -> dict[str, Any]:
    """Turn the environment into Gunicorn settings; raise ConfigError on the first invalid value."""
    workers_per_core = _positive_float(env, "WORKERS_PER_CORE")
    web_concurrency = _positive_int(env, "WEB_CONCURRENCY")
    max_workers = _positive_int(env, "MAX_WORKERS")
    host = _get(env, "HOST") or DEFAULTS["HOST"]
    port = _port("PORT", _get(env, "PORT") or DEFAULTS["PORT"])
    loglevel = _loglevel(env)
    if web_concurrency is not None:
        workers = web_concurrency
    else:
        workers = max(1, int(cores * workers_per_core))
        if max_workers is not None:
            workers = min(workers, max_workers)
    access_log = _get(env, "ACCESS_LOG") or DEFAULTS["ACCESS_LOG"]
    return {
        "workers": workers,
        "cores": cores,
        "workers_per_core": workers_per_core,
        "web_concurrency": web_concurrency,
        "max_workers": max_workers,
        "bind": _bind(env, host, port),
        "host": host,
        "port": port,
        "loglevel": loglevel,
        "timeout": _positive_int(env, "TIMEOUT", allow_zero=True),
        "graceful_timeout": _positive_int(env, "GRACEFUL_TIMEOUT", allow_zero=True),
        "keepalive": _positive_int(env, "KEEP_ALIVE", allow_zero=True),
        "accesslog": None if access_log.lower() == "off" else access_log,
        "errorlog": _get(env, "ERROR_LOG") or DEFAULTS["ERROR_LOG"],
        "control_socket": _control_socket(env),
        "worker_max_memory_mib": _positive_int(env, "WORKER_MAX_MEMORY", allow_zero=True) or None,
    }


def _resolve_or_exit() -> dict[str, Any]:
    try:
        return resolve(os.environ, usable_cores())
    except ConfigError as error:
        print(f"gunicorn_conf: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


settings = _resolve_or_exit()

# The names Gunicorn reads from a configuration module.
workers = settings["workers"]
bind = [settings["bind"]]
loglevel = settings["loglevel"]
timeout = settings["timeout"]
graceful_timeout = settings["graceful_timeout"]
keepalive = settings["keepalive"]
accesslog = settings["accesslog"]
errorlog = settings["errorlog"]
if settings["control_socket"] is None:
    control_socket_disable = True
else:
    control_socket = settings["control_socket"]


def on_starting(server: Any) -> None:
    """Log the resolved settings once per start, so the journal says what the service sized itself to."""
    server.log.info("resolved settings: %s", json.dumps(settings, sort_keys=True))


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


def post_worker_init(worker: Any) -> None:
    """Arm the per-worker memory limit; Meinheld's loop looks up worker.watchdog after this hook returns."""
    limit = settings["worker_max_memory_mib"]
    if limit is None:
        return
    if not hasattr(worker, "watchdog"):
        worker.log.warning("WORKER_MAX_MEMORY=%s is enforced for Meinheld workers only; this worker ignores it", limit)
        return
    worker.watchdog = retire_when_over(worker, limit)


if __name__ == "__main__":
    print(json.dumps(settings, sort_keys=True))
