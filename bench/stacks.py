"""The stacks under test and how each one is started: one place to read what "fair" means in this benchmark.

Every stack serves the same answer ("Hello World from Flask", 22 bytes) on a loopback port, with one worker process
(the per-core table), access logs off everywhere (the suite's default logs to the journal; uWSGI and nginx log by
default too: logging would measure the log path, not the server), and each server's own defaults otherwise.
One row is the exception, on purpose: "suite as deployed" runs the suite with the runtime's real defaults (no access
log, as the image, and log level info), so the table shows that the defaults cost nothing next to the tuned row.
The suite's stacks run through the real launcher (files/start.py) and runtime config (files/gunicorn_conf.py), with
the environment the systemd unit gives them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from bench import paths

HELLO = b"Hello World from Flask"
BASELINE = "uwsgi-nginx"
SUITE = "suite"
SUITE_DEFAULTS = "suite-defaults"
SUITE_BASELINE = "suite-baseline"  # `run --baseline PATCH`: the suite with Meinheld built from an earlier series
SUITE_FRONT = "suite-front"  # the suite behind the roles' front (HAProxy on the same host), beside the suite direct
SUITE_METRICS = "suite-metrics"  # the suite with its Prometheus metrics on (METRICS_BIND), beside the suite without
SUITE_JSON_LOG = "suite-json-log"  # the suite writing one JSON access log line per request
STOCK = "stock-meinheld"
# Threads per gthread worker: Gunicorn's docs suggest 2-4 per core; one worker on one core gets 4.
GTHREAD_THREADS = 4


@dataclass(frozen=True)
class Context:
    """What a stack needs to start: its port, a scratch directory, the venvs' interpreters, and its worker sizing."""

    port: int
    rundir: Path
    pythons: Mapping[str, Path]
    env: Mapping[str, str] = field(default_factory=dict)

    def venv_bin(self, venv: str) -> Path:
        """The bin/ directory of a venv (console scripts such as uwsgi and granian live there)."""
        return self.pythons[venv].parent


@dataclass(frozen=True)
class Proc:
    """One long-running process of a stack; `workers` says where its app workers are, for the RSS figure."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    workers: str = "children"  # "children": the workers are its child processes; "self": it serves itself; "none"


@dataclass(frozen=True)
class Launch:
    """Everything a stack runs: config files to write, processes in start order, and the URL that serves the answer."""

    procs: tuple[Proc, ...]
    url: str
    files: Mapping[Path, str] = field(default_factory=dict)
    ready_files: tuple[Path, ...] = ()  # files (unix sockets) that must exist before the next process starts


@dataclass(frozen=True)
class Stack:
    """A server arrangement in the comparison."""

    key: str
    label: str
    kind: str  # "suite" | "peer" | "baseline" | "ceiling"
    venv: str | None
    build: Callable[[Context], Launch]


def _base_env(ctx: Context) -> dict[str, str]:
    """The environment of every server: what the systemd unit sets for the suite, the same for its peers."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(ctx.rundir),
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _url(ctx: Context, path: str = "/") -> str:
    return f"http://127.0.0.1:{ctx.port}{path}"


def _launcher(venv: str, app_dir: Path, **extra: str) -> Callable[[Context], Launch]:
    """A stack started as the roles start it: `<venv python> start.py` with the env file's variables.

    ACCESS_LOG, LOG_LEVEL or CONTROL_SOCKET given as "" in `extra` are left unset, so gunicorn_conf.py's own defaults
    apply (the "as deployed" row).
    """

    def build(ctx: Context) -> Launch:
        env = {
            **_base_env(ctx),
            "APP_DIR": str(app_dir),
            "HOST": "127.0.0.1",
            "PORT": str(ctx.port),
            "WEB_CONCURRENCY": "1",
            "ACCESS_LOG": "off",
            "CONTROL_SOCKET": "off",
            "LOG_LEVEL": "warning",
            **extra,
            **ctx.env,
        }
        env = {name: value for name, value in env.items() if value != ""}  # ctx.env may unset WEB_CONCURRENCY
        proc = Proc("gunicorn", (str(ctx.pythons[venv]), str(paths.START_PY)), env, app_dir)
        return Launch((proc,), _url(ctx))

    return build


def _via_front(inner: Callable[[Context], Launch]) -> Callable[[Context], Launch]:
    """The inner stack on a loopback port of its own, behind the distribution's HAProxy on the stack's port.

    HAProxy runs the balancer role's configuration as its `front` entry point renders it (bench/front.py), and the
    app trusts its forwarding headers (FORWARDED_ALLOW_IPS=127.0.0.1), as an app with `front: true` does. HAProxy
    shares the server's CPU: on a host with a front, both run on its cores.
    """

    def build(ctx: Context) -> Launch:
        # Imported here: bench.procs imports this module, and bench.front's jinja2 and yaml are the tooling venv's
        # (bench.chart imports this module under the peers venv, which has neither).
        from bench import front, procs

        backend_port = procs.free_port()
        app = inner(replace(ctx, port=backend_port, env={"FORWARDED_ALLOW_IPS": "127.0.0.1", **ctx.env}))
        conf = ctx.rundir / "haproxy.cfg"
        text = front.front_config(ctx.port, f"127.0.0.1:{backend_port}", ctx.rundir / "admin.sock")
        haproxy = Proc("haproxy", ("haproxy", "-db", "-f", str(conf)), _base_env(ctx), ctx.rundir, workers="none")
        return Launch((*app.procs, haproxy), _url(ctx), {**app.files, conf: text}, app.ready_files)

    return build


def _with_metrics(inner: Callable[[Context], Launch]) -> Callable[[Context], Launch]:
    """The inner stack with METRICS_BIND on a loopback port of its own: every request counted, nothing scraped."""

    def build(ctx: Context) -> Launch:
        from bench import procs  # bench.procs imports this module

        return inner(replace(ctx, env={"METRICS_BIND": f"127.0.0.1:{procs.free_port()}", **ctx.env}))

    return build


def _uwsgi_nginx(app_dir: Path) -> Callable[[Context], Launch]:
    """Start uWSGI serving app_dir's main:app behind nginx (see _uwsgi_nginx_launch)."""
    return lambda ctx: _uwsgi_nginx_launch(ctx, app_dir)


def _uwsgi_nginx_launch(ctx: Context, app_dir: Path) -> Launch:
    """Start uWSGI (one process, master) behind nginx (one worker) over the uwsgi protocol on a unix socket.

    This is the uwsgi-nginx-flask arrangement, minus its `try_files` lookup (a stat per request) and with uWSGI's
    listen backlog raised to 1024: at the default 100, nginx answered 502 under 64 connections here.
    """
    sock = ctx.rundir / "uwsgi.sock"
    ini = ctx.rundir / "uwsgi.ini"
    venv = ctx.pythons["peers"].parent.parent
    uwsgi_ini = f"""[uwsgi]
strict = true
master = true
processes = 1
chdir = {app_dir}
module = main
callable = app
virtualenv = {venv}
socket = {sock}
chmod-socket = 666
listen = 1024
need-app = true
die-on-term = true
disable-logging = true
"""
    location = f"include {ctx.rundir / 'uwsgi_params'}; uwsgi_pass unix:{sock};"
    files = {ini: uwsgi_ini, ctx.rundir / "uwsgi_params": UWSGI_PARAMS, **_nginx_files(ctx, location)}
    uwsgi = Proc("uwsgi", (str(ctx.venv_bin("peers") / "uwsgi"), "--ini", str(ini)), _base_env(ctx), ctx.rundir)
    return Launch((uwsgi, _nginx_proc(ctx)), _url(ctx), files, ready_files=(sock,))


def _nginx_static(ctx: Context) -> Launch:
    """Serve the same 22 bytes from a file with nginx: the most the loopback HTTP path does on one core."""
    static = ctx.rundir / "static"
    location = f"root {static};"
    files = {static / "hello.txt": HELLO.decode(), **_nginx_files(ctx, location)}
    return Launch((_nginx_proc(ctx),), _url(ctx, "/hello.txt"), files)


def _nginx_files(ctx: Context, location: str) -> dict[Path, str]:
    user = "user root root;" if os.geteuid() == 0 else ""  # workers keep our identity, so they can read our rundir
    temp = "\n".join(
        f"    {kind}_temp_path {ctx.rundir / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf = f"""{user}
worker_processes 1;
pid {ctx.rundir / "nginx.pid"};
error_log {ctx.rundir / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type text/html;
{temp}
    server {{
        listen 127.0.0.1:{ctx.port} backlog=1024;
        location / {{ {location} }}
    }}
}}
"""
    return {ctx.rundir / "nginx.conf": conf}


def _nginx_proc(ctx: Context) -> Proc:
    argv = (
        "nginx",
        "-p",
        str(ctx.rundir),
        "-c",
        str(ctx.rundir / "nginx.conf"),
        "-e",
        str(ctx.rundir / "nginx-error.log"),
    )
    return Proc("nginx", (*argv, "-g", "daemon off; master_process on;"), _base_env(ctx), ctx.rundir, workers="none")


def _bjoern(ctx: Context) -> Launch:
    """bjoern: one process, libev, written in C; it has no workers of its own (the process serves)."""
    code = f"import bjoern, main; bjoern.run(main.app, '127.0.0.1', {ctx.port})"
    proc = Proc("bjoern", (str(ctx.pythons["peers"]), "-c", code), _base_env(ctx), paths.EXAMPLE_APP, workers="self")
    return Launch((proc,), _url(ctx))


def _granian(ctx: Context) -> Launch:
    """granian: Rust (hyper) HTTP/1 in front of the WSGI app; one worker process, its default threads."""
    argv = (
        str(ctx.venv_bin("peers") / "granian"),
        *("--interface", "wsgi", "--http", "1", "--no-ws", "--workers", "1", "--log-level", "warning"),
        *("--host", "127.0.0.1", "--port", str(ctx.port), "main:app"),
    )
    return Launch((Proc("granian", argv, _base_env(ctx), paths.EXAMPLE_APP),), _url(ctx))


# The uwsgi_params file Debian's nginx ships, inlined so the stack does not depend on /etc/nginx.
UWSGI_PARAMS = "".join(
    f"uwsgi_param {name} {value};\n"
    for name, value in (
        ("QUERY_STRING", "$query_string"),
        ("REQUEST_METHOD", "$request_method"),
        ("CONTENT_TYPE", "$content_type"),
        ("CONTENT_LENGTH", "$content_length"),
        ("REQUEST_URI", "$request_uri"),
        ("PATH_INFO", "$document_uri"),
        ("DOCUMENT_ROOT", "$document_root"),
        ("SERVER_PROTOCOL", "$server_protocol"),
        ("REQUEST_SCHEME", "$scheme"),
        ("HTTPS", "$https if_not_empty"),
        ("REMOTE_ADDR", "$remote_addr"),
        ("REMOTE_PORT", "$remote_port"),
        ("SERVER_PORT", "$server_port"),
        ("SERVER_NAME", "$server_name"),
    )
)

PER_CORE: tuple[Stack, ...] = (
    Stack(SUITE, "suite: Gunicorn + patched Meinheld", "suite", "suite", _launcher("suite", paths.EXAMPLE_APP)),
    Stack(
        SUITE_DEFAULTS,
        "suite as deployed: the runtime's defaults (no access log, log level info)",
        "suite",
        "suite",
        # the runtime's defaults (files/gunicorn_conf.py): no access log (ACCESS_LOG off, as the image) and LOG_LEVEL
        # info; an access log turned on (ACCESS_LOG=-) goes to the journal under systemd
        _launcher("suite", paths.EXAMPLE_APP, ACCESS_LOG="", LOG_LEVEL=""),
    ),
    Stack(
        SUITE_FRONT,
        "suite via front: HAProxy (plain HTTP) before the suite",
        "suite",
        "suite",
        _via_front(_launcher("suite", paths.EXAMPLE_APP)),
    ),
    Stack(
        SUITE_METRICS,
        "suite, metrics on: every request counted for Prometheus",
        "suite",
        "suite",
        _with_metrics(_launcher("suite", paths.EXAMPLE_APP)),
    ),
    Stack(
        SUITE_JSON_LOG,
        "suite, JSON access log: one line per request to the journal's stream",
        "suite",
        "suite",
        # stdout is a file under the run directory here, as the journal's stream is under systemd: a write per line
        _launcher("suite", paths.EXAMPLE_APP, ACCESS_LOG="-", ACCESS_LOG_FORMAT="json"),
    ),
    Stack(STOCK, "Gunicorn + stock Meinheld 1.0.2", "peer", "stock", _launcher("stock", paths.EXAMPLE_APP)),
    Stack(BASELINE, "uWSGI behind nginx (uwsgi protocol)", "baseline", "peers", _uwsgi_nginx(paths.EXAMPLE_APP)),
    Stack(
        "gunicorn-sync", "Gunicorn sync", "peer", "peers", _launcher("peers", paths.EXAMPLE_APP, WORKER_CLASS="sync")
    ),
    Stack(
        "gunicorn-gthread",
        f"Gunicorn gthread ({GTHREAD_THREADS} threads)",
        "peer",
        "peers",
        _launcher("peers", paths.EXAMPLE_APP, WORKER_CLASS="gthread", GUNICORN_CMD_ARGS=f"--threads {GTHREAD_THREADS}"),
    ),
    Stack("bjoern", "bjoern", "peer", "peers", _bjoern),
    Stack("granian", "granian (WSGI)", "peer", "peers", _granian),
    Stack(
        "suite-bare-wsgi", "ceiling: suite stack, bare WSGI app", "ceiling", "suite", _launcher("suite", paths.BARE_APP)
    ),
    Stack(
        "uwsgi-nginx-bare-wsgi",
        "ceiling: uWSGI+nginx, bare WSGI app",
        "ceiling",
        "peers",
        _uwsgi_nginx(paths.BARE_APP),
    ),
    Stack("nginx-static", "ceiling: nginx, static file", "ceiling", None, _nginx_static),
)

# Scaling: the suite's stack sized by WORKERS_PER_CORE (no WEB_CONCURRENCY) on both cores.
SCALING_WORKERS_PER_CORE = (1, 2, 4)


def scaling_env(workers_per_core: float, preload: bool = False) -> dict[str, str]:
    """The env of a scaling run: the default sizing rule at a given WORKERS_PER_CORE, PRELOAD off or on."""
    return {"WEB_CONCURRENCY": "", "WORKERS_PER_CORE": f"{workers_per_core:g}", "PRELOAD": "on" if preload else "off"}


def baseline_stack(last_patch: str) -> Stack:
    """The suite's stack (same launcher, config, pins, env) on Meinheld built from the series cut after last_patch.

    last_patch is the series' file name (0017-hold-at-most-16-requests-per-batch.patch); the label carries its number.
    """
    number = last_patch.split("-", 1)[0]
    return Stack(
        SUITE_BASELINE,
        f"suite, Meinheld patches up to {number}",
        "suite",
        SUITE_BASELINE,
        _launcher(SUITE_BASELINE, paths.EXAMPLE_APP),
    )


def by_key(keys: list[str] | None, extra: tuple[Stack, ...] = ()) -> tuple[Stack, ...]:
    """The stacks named (all when None), in the table's order; an unknown name is an error, not a silent skip.

    `extra` (the --baseline stack) is known besides PER_CORE, listed right after the suite, and always chosen: asking
    for a baseline means measuring it.
    """
    everything = _with_extra(extra)
    if not keys:
        return everything
    known = {stack.key: stack for stack in everything}
    unknown = sorted(set(keys) - set(known))
    if unknown:
        hint = f" ({SUITE_BASELINE} needs --baseline PATCH)" if SUITE_BASELINE in unknown else ""
        raise ValueError(f"unknown stack(s) {', '.join(unknown)}{hint}; known: {', '.join(known)}")
    wanted = set(keys) | {stack.key for stack in extra}
    return tuple(stack for stack in everything if stack.key in wanted)


def _with_extra(extra: tuple[Stack, ...]) -> tuple[Stack, ...]:
    if not extra:
        return PER_CORE
    at = next(i for i, stack in enumerate(PER_CORE) if stack.key == SUITE) + 1
    return (*PER_CORE[:at], *extra, *PER_CORE[at:])
