"""files/gunicorn_conf.py: every variable's default and override, precedence, sizing, cgroup quotas, bad values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.conftest import FILES, REPO, load_module

CONF = FILES / "gunicorn_conf.py"


def run_conf(env: dict[str, str], *prefix: str) -> subprocess.CompletedProcess[str]:
    """Run the conf as a script the way an operator would, with only the given variables set."""
    clean = {"PATH": os.environ["PATH"], **env}
    return subprocess.run([*prefix, sys.executable, str(CONF)], env=clean, capture_output=True, text=True, check=False)


def test_defaults_match_the_image(conf: ModuleType) -> None:
    settings = conf.resolve({}, cores=2)
    assert settings == {
        "workers": 4,
        "cores": 2,
        "workers_per_core": 2.0,
        "web_concurrency": None,
        "max_workers": None,
        "bind": "0.0.0.0:80",
        "host": "0.0.0.0",
        "port": 80,
        "loglevel": "info",
        "timeout": 120,
        "graceful_timeout": 120,
        "keepalive": 120,
        "header_timeout": 10,
        "body_timeout": 30,
        "worker_connections": 4096,
        "accesslog": None,
        "access_log_format": "text",
        "errorlog": "-",
        "preload_app": False,
        "forwarded_allow_ips": [],
        "metrics": None,
        "control_socket": None,
        "worker_max_memory_mib": None,
        "warnings": [],
    }


@pytest.mark.parametrize(
    ("env", "key", "expected"),
    [
        ({"WORKERS_PER_CORE": "3"}, "workers", 6),
        ({"WORKERS_PER_CORE": "3"}, "workers_per_core", 3.0),
        ({"WEB_CONCURRENCY": "7"}, "workers", 7),
        ({"HOST": "127.0.0.1"}, "bind", "127.0.0.1:80"),
        ({"PORT": "8080"}, "bind", "0.0.0.0:8080"),
        ({"PORT": "8080"}, "port", 8080),
        ({"HOST": "::"}, "bind", "[::]:80"),
        ({"BIND": "unix:/run/app.sock"}, "bind", "unix:/run/app.sock"),
        ({"LOG_LEVEL": "warning"}, "loglevel", "warning"),
        ({"LOG_LEVEL": "DEBUG"}, "loglevel", "debug"),
        ({"MAX_WORKERS": "3"}, "workers", 3),
        ({"TIMEOUT": "30"}, "timeout", 30),
        ({"TIMEOUT": "0"}, "timeout", 0),
        ({"GRACEFUL_TIMEOUT": "10"}, "graceful_timeout", 10),
        ({"KEEP_ALIVE": "2"}, "keepalive", 2),
        ({}, "header_timeout", 10),
        ({"HEADER_TIMEOUT": "5"}, "header_timeout", 5),
        ({}, "body_timeout", 30),
        ({"BODY_TIMEOUT": "120"}, "body_timeout", 120),
        ({}, "worker_connections", 4096),
        ({"WORKER_CONNECTIONS": "100"}, "worker_connections", 100),
        ({"ACCESS_LOG": "off"}, "accesslog", None),
        ({"ACCESS_LOG": "-"}, "accesslog", "-"),
        ({"ACCESS_LOG": "/var/log/app/access.log"}, "accesslog", "/var/log/app/access.log"),
        ({"ERROR_LOG": "/var/log/app/error.log"}, "errorlog", "/var/log/app/error.log"),
        ({"RUNTIME_DIRECTORY": "/run/gunicorn-demo"}, "control_socket", "/run/gunicorn-demo/gunicorn.ctl"),
        ({}, "preload_app", False),
        ({"PRELOAD": ""}, "preload_app", False),
        ({"PRELOAD": "on"}, "preload_app", True),
        ({"PRELOAD": "TRUE"}, "preload_app", True),
        ({"PRELOAD": "1"}, "preload_app", True),
        ({"PRELOAD": "Yes"}, "preload_app", True),
        ({"PRELOAD": "off"}, "preload_app", False),
        ({"PRELOAD": "no"}, "preload_app", False),
        ({"PRELOAD": "0"}, "preload_app", False),
        ({"RUNTIME_DIRECTORY": "/run/a:/run/b"}, "control_socket", "/run/a/gunicorn.ctl"),
        ({"RUNTIME_DIRECTORY": "/run/a", "CONTROL_SOCKET": "off"}, "control_socket", None),
        ({"CONTROL_SOCKET": "/run/x/ctl.sock"}, "control_socket", "/run/x/ctl.sock"),
        ({"WORKER_MAX_MEMORY": "256"}, "worker_max_memory_mib", 256),
        ({"WORKER_MAX_MEMORY": "0"}, "worker_max_memory_mib", None),  # 0 = no limit
        ({"WEB_CONCURRENCY": ""}, "workers", 4),  # `NAME=` in an env file means unset
        ({"WORKERS_PER_CORE": " "}, "workers", 4),
    ],
)
def test_override(conf: ModuleType, env: dict[str, str], key: str, expected: object) -> None:
    assert conf.resolve(env, cores=2)[key] == expected


@pytest.mark.parametrize(
    ("env", "expected_bind"),
    [
        ({"BIND": "127.0.0.1:9000", "HOST": "10.0.0.1", "PORT": "81"}, "127.0.0.1:9000"),
        ({"HOST": "10.0.0.1", "PORT": "81"}, "10.0.0.1:81"),
        ({"BIND": "[::1]:9000", "PORT": "81"}, "[::1]:9000"),
    ],
)
def test_bind_wins_over_host_and_port(conf: ModuleType, env: dict[str, str], expected_bind: str) -> None:
    assert conf.resolve(env, cores=1)["bind"] == expected_bind


@pytest.mark.parametrize(
    ("env", "cores", "workers"),
    [
        ({"WEB_CONCURRENCY": "3", "WORKERS_PER_CORE": "10"}, 4, 3),
        ({"WEB_CONCURRENCY": "9", "MAX_WORKERS": "2"}, 4, 9),  # a fixed count is not capped
        ({"WORKERS_PER_CORE": "0.5"}, 8, 4),
        ({"WORKERS_PER_CORE": "1.5"}, 3, 4),
        ({"WORKERS_PER_CORE": "0.5"}, 1, 1),  # never 0
        ({"WORKERS_PER_CORE": "0.01"}, 2, 1),
        ({"WORKERS_PER_CORE": "4", "MAX_WORKERS": "6"}, 16, 6),
        ({"WORKERS_PER_CORE": "4", "MAX_WORKERS": "100"}, 2, 8),
        ({}, 16, 32),
    ],
)
def test_worker_count(conf: ModuleType, env: dict[str, str], cores: int, workers: int) -> None:
    assert conf.resolve(env, cores=cores)["workers"] == workers


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("WORKERS_PER_CORE", "abc"),
        ("WORKERS_PER_CORE", "0"),
        ("WORKERS_PER_CORE", "-1"),
        ("WORKERS_PER_CORE", "nan"),
        ("WORKERS_PER_CORE", "inf"),
        ("WEB_CONCURRENCY", "0"),
        ("WEB_CONCURRENCY", "-2"),
        ("WEB_CONCURRENCY", "two"),
        ("WEB_CONCURRENCY", "1.5"),
        ("MAX_WORKERS", "0"),
        ("PORT", "0"),
        ("PORT", "99999"),
        ("PORT", "http"),
        ("BIND", "0.0.0.0:99999"),
        ("BIND", "0.0.0.0:http"),
        ("LOG_LEVEL", "loud"),
        ("TIMEOUT", "-1"),
        ("GRACEFUL_TIMEOUT", "soon"),
        ("KEEP_ALIVE", "-5"),
        ("HEADER_TIMEOUT", "0"),
        ("HEADER_TIMEOUT", "121"),
        ("BODY_TIMEOUT", "soon"),
        ("BODY_TIMEOUT", "2.5"),
        ("WORKER_CONNECTIONS", "0"),
        ("WORKER_CONNECTIONS", "60001"),
        ("WORKER_MAX_MEMORY", "1G"),
        ("WORKER_MAX_MEMORY", "-1"),
        ("PRELOAD", "enabled"),
        ("PRELOAD", "2"),
    ],
)
def test_bad_value_names_variable_and_value(conf: ModuleType, name: str, value: str) -> None:
    with pytest.raises(conf.ConfigError) as raised:
        conf.resolve({name: value}, cores=2)
    assert str(raised.value).startswith(f"{name}={value!r} is invalid")


def test_script_prints_one_json_line() -> None:
    result = run_conf({"WEB_CONCURRENCY": "3", "PORT": "8080", "LOG_LEVEL": "error"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    settings = json.loads(lines[0])
    assert {"workers", "cores", "workers_per_core", "bind", "host", "port", "loglevel"} <= settings.keys()
    assert (settings["workers"], settings["bind"], settings["loglevel"]) == (3, "0.0.0.0:8080", "error")


@pytest.mark.parametrize(
    ("name", "value"),
    [("WORKERS_PER_CORE", "abc"), ("WORKERS_PER_CORE", "-1"), ("WEB_CONCURRENCY", "0"), ("PORT", "99999")],
)
def test_script_rejects_bad_value_with_one_line(name: str, value: str) -> None:
    result = run_conf({name: value})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert f"{name}={value!r}" in result.stderr


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is part of every Debian install")
@pytest.mark.parametrize(("cpus", "cores"), [("0", 1), ("0,1", 2)])
def test_affinity_bounds_cores(cpus: str, cores: int) -> None:
    if cores > len(os.sched_getaffinity(0)):
        pytest.skip(f"this machine has fewer than {cores} CPUs")
    result = run_conf({"WORKERS_PER_CORE": "2"}, "taskset", "-c", cpus)
    settings = json.loads(result.stdout)
    assert (settings["cores"], settings["workers"]) == (cores, 2 * cores)


def _cgroup_tree(tmp_path: Path, proc_lines: list[str], files: dict[str, str]) -> tuple[Path, Path]:
    """Write a fake /sys/fs/cgroup and /proc/self/cgroup; files maps a path under the root to its content."""
    root = tmp_path / "cgroup"
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content + "\n")
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("\n".join(proc_lines) + "\n")
    return root, proc


V2 = ["0::/system.slice/gunicorn@demo.service"]
V1 = ["4:memory:/system.slice/x.service", "2:cpu,cpuacct:/system.slice/x.service", "0::/system.slice/x.service"]


@pytest.mark.parametrize(
    ("proc_lines", "files", "limit"),
    [
        (V2, {"system.slice/gunicorn@demo.service/cpu.max": "150000 100000"}, 1.5),
        (V2, {"system.slice/gunicorn@demo.service/cpu.max": "max 100000"}, None),
        (V2, {}, None),
        (
            V2,
            {"system.slice/gunicorn@demo.service/cpu.max": "max 100000", "system.slice/cpu.max": "50000 100000"},
            0.5,
        ),
        (["0::/"], {"cpu.max": "200000 100000"}, 2.0),  # inside a cgroup namespace: the container's own limit
        (
            V1,
            {
                "cpu,cpuacct/system.slice/x.service/cpu.cfs_quota_us": "250000",
                "cpu,cpuacct/system.slice/x.service/cpu.cfs_period_us": "100000",
            },
            2.5,
        ),
        (
            V1,
            {
                "cpu,cpuacct/system.slice/x.service/cpu.cfs_quota_us": "-1",
                "cpu,cpuacct/system.slice/x.service/cpu.cfs_period_us": "100000",
            },
            None,
        ),
        (["1:cpu:/a"], {"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, 0.5),
    ],
)
def test_cgroup_cpu_limit(
    conf: ModuleType, tmp_path: Path, proc_lines: list[str], files: dict[str, str], limit: float | None
) -> None:
    root, proc = _cgroup_tree(tmp_path, proc_lines, files)
    assert conf.cgroup_cpu_limit(root, proc) == limit


def test_cgroup_limit_without_proc_file(conf: ModuleType, tmp_path: Path) -> None:
    assert conf.cgroup_cpu_limit(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "limit", "cores"),
    [(8, 1.5, 2), (2, None, 2), (4, 0.2, 1), (2, 16.0, 2), (1, None, 1)],
)
def test_usable_cores(conf: ModuleType, affinity: int, limit: float | None, cores: int) -> None:
    assert conf.usable_cores(lambda: affinity, lambda: limit) == cores


def test_gunicorn_reads_module_names() -> None:
    """Loaded as Gunicorn loads it, the names Gunicorn looks for exist at module level with the resolved values."""
    conf = load_module(CONF, {}, name="__config__")
    assert conf.workers == conf.settings["workers"]
    assert conf.bind == [conf.settings["bind"]]
    assert conf.loglevel == "info"
    assert conf.control_socket_disable is True


class FakeWorker:
    """What retire_when_over touches on a Meinheld worker: its watchdog, alive flag, pid, log and cfg."""

    def __init__(self) -> None:
        self.alive = True
        self.pid = 4242
        self.heartbeats = 0
        self.warnings: list[str] = []
        self.cfg = SimpleNamespace(graceful_timeout=7)
        self.log = SimpleNamespace(warning=lambda msg, *args: self.warnings.append(msg % args))

    def watchdog(self) -> None:
        self.heartbeats += 1


@pytest.mark.parametrize(("used_mib", "retired"), [(100.0, False), (256.0, False), (300.0, True)])
def test_worker_over_its_memory_limit_retires_gracefully(
    conf: ModuleType, monkeypatch: pytest.MonkeyPatch, used_mib: float, retired: bool
) -> None:
    stops: list[int] = []
    monkeypatch.setitem(sys.modules, "meinheld", SimpleNamespace(server=SimpleNamespace(stop=stops.append)))
    worker = FakeWorker()
    watchdog = conf.retire_when_over(worker, 256, rss=lambda: used_mib)
    watchdog()
    watchdog()
    assert worker.heartbeats == 2  # the original watchdog (the arbiter's heartbeat) still runs
    assert worker.alive is not retired
    assert stops == ([7] if retired else [])  # once, with the graceful timeout
    assert bool(worker.warnings) is retired


def test_resident_mib_reads_statm(conf: ModuleType, tmp_path: Path) -> None:
    statm = tmp_path / "statm"
    statm.write_text(f"9999 {2**20 // os.sysconf('SC_PAGE_SIZE') * 3} 0 0 0 0 0\n")
    assert conf.resident_mib(statm) == 3.0


def test_imported_by_another_name_it_reads_nothing() -> None:
    """The deploy role imports the rules on the controller: no resolution (and no exit) on a bad environment there."""
    conf = load_module(CONF, {"PORT": "99999"})
    assert not hasattr(conf, "settings")
    assert not hasattr(conf, "workers")


@pytest.mark.parametrize(
    ("env", "bind", "host", "port"),
    [
        ({}, "0.0.0.0:80", "0.0.0.0", 80),
        ({"BIND": "127.0.0.1"}, "127.0.0.1:8000", "127.0.0.1", 8000),  # Gunicorn's own default port
        ({"BIND": "127.0.0.1", "PORT": "81"}, "127.0.0.1:8000", "127.0.0.1", 8000),
        ({"BIND": "[::1]"}, "[::1]:8000", "::1", 8000),
        ({"BIND": "[::1]:9000"}, "[::1]:9000", "::1", 9000),
        ({"BIND": "localhost:81"}, "localhost:81", "localhost", 81),
        ({"BIND": "unix:/run/gunicorn-x/app.sock"}, "unix:/run/gunicorn-x/app.sock", None, None),
        ({"BIND": "fd://3"}, "fd://3", None, None),
        ({"HOST": "::1", "PORT": "8080"}, "[::1]:8080", "::1", 8080),
        ({"HOST": "[::]"}, "[::]:80", "::", 80),
        ({"HOST": "10.0.0.1", "PORT": "81"}, "10.0.0.1:81", "10.0.0.1", 81),
    ],
)
def test_bind_resolves_host_and_port_together(
    conf: ModuleType, env: dict[str, str], bind: str, host: str | None, port: int | None
) -> None:
    settings = conf.resolve(env, cores=1)
    assert (settings["bind"], settings["host"], settings["port"]) == (bind, host, port)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PORT", "\u0668\u0660"),  # Arabic-Indic digits: int() takes them
        ("PORT", "8_0"),
        ("PORT", "+80"),
        ("WEB_CONCURRENCY", "\uff13"),
        ("WORKERS_PER_CORE", "1e9"),
        ("WORKERS_PER_CORE", "1_0"),
        ("WEB_CONCURRENCY", "100000"),
        ("KEEP_ALIVE", str(2**31)),
        ("HEADER_TIMEOUT", "\u0661\u0660"),
        ("BODY_TIMEOUT", "%i"),
        ("WORKER_CONNECTIONS", str(2**63)),
        ("GRACEFUL_TIMEOUT", str(2**31)),
        ("HOST", "evil host"),
        ("HOST", "%i"),
        ("HOST", "/etc/passwd"),
        ("BIND", "::1:80"),
        ("BIND", "[::1"),
        ("BIND", "[::1]x"),
        ("BIND", "%i:80"),
        ("BIND", "unix:"),
        ("BIND", "fd://x"),
        ("PRELOAD", "\u0661"),  # an Arabic-Indic one
        ("PRELOAD", "\u0131"),  # a dotless i: no ASCII word
        ("PRELOAD", "o\u0301n"),
        ("PRELOAD", "%i"),
        ("PRELOAD", "on; rm -rf /"),
        ("PRELOAD", "1" * 5000),
        ("FORWARDED_ALLOW_IPS", "*"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,*"),
        ("FORWARDED_ALLOW_IPS", "\u0661\u0660.0.0.1"),  # Arabic-Indic digits: ipaddress would take them
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/33"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1,"),
        ("FORWARDED_ALLOW_IPS", "lb.example.com"),
        ("FORWARDED_ALLOW_IPS", "%i"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1; rm -rf /"),
        ("FORWARDED_ALLOW_IPS", "fe80::1%eth0"),
        ("FORWARDED_ALLOW_IPS", ",".join(["10.0.0.1"] * 65)),
        ("FORWARDED_ALLOW_IPS", "1" * 5000),
        ("METRICS_BIND", "9101"),  # a port alone: which address is meant is not for us to guess
        ("METRICS_BIND", "::1:9101"),
        ("METRICS_BIND", "127.0.0.1:80"),  # the app's own port
        ("METRICS_BIND", "127.0.0.1:\u0669\u0661\u0660\u0661"),
        ("METRICS_BIND", "127.0.0.1:99999"),
        ("METRICS_BIND", "unix:/run/gunicorn/x.sock"),
        ("METRICS_BIND", "%H:9101"),
        ("METRICS_BIND", "127.0.0.1:9101; rm -rf /"),
        ("METRICS_BIND", "1" * 5000),
        ("ACCESS_LOG_FORMAT", "json"),  # with no access log to write it to
        ("ACCESS_LOG_FORMAT", "xml"),
        ("ACCESS_LOG_FORMAT", "j\u0455on"),  # a Cyrillic s
        ("ACCESS_LOG_FORMAT", "%h %r"),  # a Gunicorn format string belongs in access_log_format, not here
    ],
)
def test_hostile_value_is_refused(conf: ModuleType, name: str, value: str) -> None:
    with pytest.raises(conf.ConfigError) as raised:
        conf.resolve({name: value}, cores=2)
    assert str(raised.value).startswith(f"{name}={value!r} is invalid")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("off", None),
        ("OFF", None),
        ("127.0.0.1:9101", {"host": "127.0.0.1", "port": 9101, "bind": "127.0.0.1:9101"}),
        ("[::1]:9101", {"host": "::1", "port": 9101, "bind": "[::1]:9101"}),
        ("metrics.internal:9101", {"host": "metrics.internal", "port": 9101, "bind": "metrics.internal:9101"}),
    ],
)
def test_metrics_bind_resolves(conf: ModuleType, value: str, expected: dict | None) -> None:
    assert conf.resolve({"METRICS_BIND": value}, cores=1)["metrics"] == expected


@pytest.mark.parametrize(
    ("env", "accesslog", "access_log_format"),
    [
        ({}, None, "text"),
        ({"ACCESS_LOG": "-"}, "-", "text"),
        ({"ACCESS_LOG": "-", "ACCESS_LOG_FORMAT": "JSON"}, "-", "json"),
        (
            {"ACCESS_LOG": "/var/log/gunicorn/x/access.log", "ACCESS_LOG_FORMAT": "json"},
            "/var/log/gunicorn/x/access.log",
            "json",
        ),
    ],
)
def test_access_log_format(
    conf: ModuleType, env: dict[str, str], accesslog: str | None, access_log_format: str
) -> None:
    settings = conf.resolve(env, cores=1)
    assert (settings["accesslog"], settings["access_log_format"]) == (accesslog, access_log_format)


def test_every_invalid_variable_is_listed(conf: ModuleType) -> None:
    with pytest.raises(conf.ConfigErrors) as raised:
        conf.resolve({"PORT": "0", "LOG_LEVEL": "loud", "WORKERS_PER_CORE": "x"}, cores=1)
    assert sorted(error.name for error in raised.value.errors) == ["LOG_LEVEL", "PORT", "WORKERS_PER_CORE"]


@pytest.mark.parametrize(("keepalive", "warned"), [("120", False), ("61", False), ("60", True), ("5", True)])
def test_a_keep_alive_below_61_is_warned_about(conf: ModuleType, keepalive: str, warned: bool) -> None:
    warnings = conf.resolve({"KEEP_ALIVE": keepalive}, cores=1)["warnings"]
    assert bool(warnings) is warned
    assert all(w.startswith(f"KEEP_ALIVE={keepalive} is below 61") for w in warnings)


@pytest.mark.parametrize("preload", [True, False])
def test_a_start_marks_its_runtime_directory_when_it_preloads(conf: ModuleType, tmp_path: Path, preload: bool) -> None:
    marker = tmp_path / conf.PRELOADED_MARKER
    marker.write_text("left by an earlier master\n")
    conf.mark_preloaded(f"{tmp_path}:/run/other", preload)  # systemd lists several directories with ':'
    assert marker.is_file() is preload


def test_no_runtime_directory_no_marker(conf: ModuleType) -> None:
    conf.mark_preloaded(None, True)  # outside the roles' unit: nothing to write, nothing raised


def test_the_role_reads_the_marker_the_runtime_writes(conf: ModuleType) -> None:
    app_layout = load_module(REPO / "plugins" / "module_utils" / "app_layout.py")
    assert app_layout.PRELOADED_MARKER == conf.PRELOADED_MARKER


@pytest.mark.parametrize(
    ("value", "networks"),
    [
        ("", []),
        ("10.0.2.2", ["10.0.2.2/32"]),
        (" 10.0.0.0/8 , ::1 ", ["10.0.0.0/8", "::1/128"]),
        ("192.168.1.7/24", ["192.168.1.0/24"]),  # the network the address is in, as Gunicorn reads a CIDR
        ("127.0.0.1,127.0.0.1", ["127.0.0.1/32"]),
    ],
)
def test_forwarded_allow_ips_names_the_trusted_networks(conf: ModuleType, value: str, networks: list[str]) -> None:
    assert conf.resolve({"FORWARDED_ALLOW_IPS": value}, cores=1)["forwarded_allow_ips"] == networks


def _seen(app_environ: dict[str, str], trusted: list[str], conf: ModuleType) -> tuple[str, str]:
    """REMOTE_ADDR and wsgi.url_scheme as the wrapped app sees them for one request with APP_ENVIRON."""
    seen = {}

    def app(environ: dict[str, str], start_response: object) -> list[bytes]:
        seen.update(environ)
        return []

    conf.trust_forwarded(app, trusted)({"wsgi.url_scheme": "http", **app_environ}, None)
    return seen["REMOTE_ADDR"], seen["wsgi.url_scheme"]


@pytest.mark.parametrize(
    ("environ", "trusted", "seen"),
    [
        # From the balancer: the address it added (last) and its scheme.
        (
            {"REMOTE_ADDR": "10.0.2.2", "HTTP_X_FORWARDED_FOR": "203.0.113.9", "HTTP_X_FORWARDED_PROTO": "https"},
            ["10.0.2.0/24"],
            ("203.0.113.9", "https"),
        ),
        # A client's own X-Forwarded-For comes before the balancer's entry: never the one believed.
        (
            {"REMOTE_ADDR": "10.0.2.2", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"},
            ["10.0.2.2/32"],
            ("203.0.113.9", "http"),
        ),
        # Straight from a client: nothing believed.
        (
            {"REMOTE_ADDR": "198.51.100.4", "HTTP_X_FORWARDED_FOR": "6.6.6.6", "HTTP_X_FORWARDED_PROTO": "https"},
            ["10.0.2.2/32"],
            ("198.51.100.4", "http"),
        ),
        # An IPv4 peer on a dual-stack socket, written IPv4-mapped.
        (
            {"REMOTE_ADDR": "::ffff:10.0.2.2", "HTTP_X_FORWARDED_FOR": "2001:db8::7"},
            ["10.0.2.2/32"],
            ("2001:db8::7", "http"),
        ),
        # What is not an address or a scheme changes nothing.
        (
            {"REMOTE_ADDR": "10.0.2.2", "HTTP_X_FORWARDED_FOR": "<script>", "HTTP_X_FORWARDED_PROTO": "gopher"},
            ["10.0.2.2/32"],
            ("10.0.2.2", "http"),
        ),
        ({"REMOTE_ADDR": "", "HTTP_X_FORWARDED_FOR": "6.6.6.6"}, ["10.0.2.2/32"], ("", "http")),
    ],
)
def test_forwarded_headers_are_believed_from_trusted_peers_only(
    conf: ModuleType, environ: dict[str, str], trusted: list[str], seen: tuple[str, str]
) -> None:
    assert _seen(environ, trusted, conf) == seen
