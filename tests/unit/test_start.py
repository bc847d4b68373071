"""files/start.py: app and config lookup as the image does it, prestart exports, the import check, the exec line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import FILES


def make_app(app_dir: Path, files: dict[str, str]) -> Path:
    for relative, content in files.items():
        (app_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (app_dir / relative).write_text(content)
    return app_dir


APP = "app = object()\n"


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({"app/main.py": APP}, {}, "app.main"),
        ({"main.py": APP}, {}, "main"),
        ({"app/main.py": APP, "main.py": APP}, {}, "app.main"),
        ({"main.py": APP}, {"MODULE_NAME": "custom_app.custom_main"}, "custom_app.custom_main"),
        ({}, {"MODULE_NAME": "elsewhere"}, "elsewhere"),
    ],
)
def test_module_name(start: ModuleType, tmp_path: Path, files: dict[str, str], env: dict, expected: str) -> None:
    assert start.module_name(make_app(tmp_path, files), env) == expected


def test_no_module_names_the_paths_it_looked_at(start: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(start.LaunchError) as raised:
        start.module_name(tmp_path, {})
    assert str(tmp_path / "app/main.py") in str(raised.value)
    assert str(tmp_path / "main.py") in str(raised.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "main:app"),
        ({"VARIABLE_NAME": "api"}, "main:api"),
        ({"MODULE_NAME": "pkg.web", "VARIABLE_NAME": "api"}, "pkg.web:api"),
        ({"APP_MODULE": "custom_app.custom_main:api", "MODULE_NAME": "ignored"}, "custom_app.custom_main:api"),
    ],
)
def test_app_module(start: ModuleType, tmp_path: Path, env: dict[str, str], expected: str) -> None:
    assert start.app_module(make_app(tmp_path, {"main.py": APP}), env) == expected


@pytest.mark.parametrize(
    ("files", "env", "expected"),
    [
        ({"gunicorn_conf.py": "", "app/gunicorn_conf.py": ""}, {}, "gunicorn_conf.py"),
        ({"app/gunicorn_conf.py": ""}, {}, "app/gunicorn_conf.py"),
        ({}, {}, None),  # the suite's own, installed next to the launcher
        ({"gunicorn_conf.py": "", "custom.py": ""}, {"GUNICORN_CONF": "custom.py"}, "custom.py"),
    ],
)
def test_gunicorn_conf_lookup(
    start: ModuleType, tmp_path: Path, files: dict[str, str], env: dict, expected: str | None
) -> None:
    found = start.gunicorn_conf(make_app(tmp_path, files), env)
    assert found == (tmp_path / expected if expected else FILES / "gunicorn_conf.py")


def test_gunicorn_conf_absolute_path(start: ModuleType, tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "conf.py"
    make_app(tmp_path, {"etc/conf.py": ""})
    assert start.gunicorn_conf(tmp_path / "app", {"GUNICORN_CONF": str(conf)}) == conf


def test_missing_gunicorn_conf_is_an_error(start: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(start.LaunchError, match=r"GUNICORN_CONF='nope.py' is invalid"):
        start.gunicorn_conf(tmp_path, {"GUNICORN_CONF": "nope.py"})


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("export FROM_PRESTART=yes\necho noise\n", {"FROM_PRESTART": "yes", "KEPT": "1"}),
        ("export FROM_PRESTART='a b\nc=d'\nexit 0\n", {"FROM_PRESTART": "a b\nc=d", "KEPT": "1"}),
        ("export MODULE_NAME=chosen.by.prestart\n", {"MODULE_NAME": "chosen.by.prestart", "KEPT": "1"}),
        ("unset KEPT\n", {}),
        ("NOT_EXPORTED=1\n", {"KEPT": "1"}),
        # A script with its own EXIT trap: its exports (and what systemd set, KEPT) still reach Gunicorn.
        ("trap 'echo cleanup >&2' EXIT\nexport FROM_PRESTART=yes\n", {"FROM_PRESTART": "yes", "KEPT": "1"}),
    ],
)
def test_prestart_exports_reach_gunicorn(start: ModuleType, tmp_path: Path, script: str, expected: dict) -> None:
    make_app(tmp_path, {"prestart.sh": script})
    env = start.run_prestart(tmp_path, {"KEPT": "1", "PATH": os.environ["PATH"]})
    env.pop("PATH")
    assert env == expected


def test_prestart_runs_in_the_app_dir(start: ModuleType, tmp_path: Path) -> None:
    make_app(tmp_path, {"prestart.sh": "touch ran-here\n"})
    start.run_prestart(tmp_path, {"PATH": os.environ["PATH"]})
    assert (tmp_path / "ran-here").exists()


def test_custom_prestart_path(start: ModuleType, tmp_path: Path) -> None:
    make_app(tmp_path, {"scripts/before.sh": "export BEFORE=1\n"})
    env = start.run_prestart(tmp_path, {"PRE_START_PATH": "scripts/before.sh", "PATH": os.environ["PATH"]})
    assert env["BEFORE"] == "1"


def test_no_prestart_leaves_env_alone(start: ModuleType, tmp_path: Path) -> None:
    assert start.run_prestart(tmp_path, {"A": "1"}) == {"A": "1"}


@pytest.mark.parametrize(
    ("files", "env", "message"),
    [
        ({"prestart.sh": "false\nexport NEVER=1\n"}, {}, "failed with exit status 1"),
        ({"prestart.sh": "exit 3\n"}, {}, "failed with exit status 3"),
        ({}, {"PRE_START_PATH": "missing.sh"}, "PRE_START_PATH='missing.sh' is invalid"),
    ],
)
def test_prestart_failure_stops_the_start(
    start: ModuleType, tmp_path: Path, files: dict, env: dict, message: str
) -> None:
    make_app(tmp_path, files)
    with pytest.raises(start.LaunchError, match=message):
        start.run_prestart(tmp_path, {"PATH": os.environ["PATH"], **env})


@pytest.mark.parametrize(
    ("files", "target", "message"),
    [
        ({"good_mod.py": APP}, "good_mod:app", None),
        ({"factory_mod.py": "def create():\n    return 1\n"}, "factory_mod:create()", None),
        ({}, "absent_mod:app", "APP_MODULE='absent_mod:app' does not import: ModuleNotFoundError"),
        ({"broken_mod.py": "raise RuntimeError('db down')\n"}, "broken_mod:app", "RuntimeError: db down"),
        ({"exiting_mod.py": "raise SystemExit(4)\n"}, "exiting_mod:app", "does not import: SystemExit"),
        ({"noattr_mod.py": APP}, "noattr_mod:api", "has no attribute 'api'"),
        ({"colonless_mod.py": APP}, "colonless_mod", "expected MODULE:VARIABLE"),
    ],
)
def test_app_import_check(start: ModuleType, tmp_path: Path, files: dict, target: str, message: str | None) -> None:
    make_app(tmp_path, files)
    if message is None:
        start.check_app_imports(tmp_path, target, dict(os.environ))
    else:
        with pytest.raises(start.LaunchError, match=message.replace("(", r"\(")):
            start.check_app_imports(tmp_path, target, dict(os.environ))
    assert str(tmp_path) not in sys.path


def test_import_check_sees_prestart_environment(start: ModuleType, tmp_path: Path) -> None:
    make_app(tmp_path, {"env_mod.py": "import os\nassert os.environ['NEEDED'] == 'yes'\napp = 1\n"})
    start.check_app_imports(tmp_path, "env_mod:app", {"NEEDED": "yes"})
    assert "NEEDED" not in os.environ


def test_prepare_builds_the_gunicorn_command(start: ModuleType, tmp_path: Path) -> None:
    make_app(tmp_path, {"app/__init__.py": "", "app/main.py": APP, "prestart.sh": "export WORKER_CLASS=sync\n"})
    argv, env = start.prepare({"APP_DIR": str(tmp_path), "PATH": os.environ["PATH"]})
    conf = str(FILES / "gunicorn_conf.py")
    assert argv == [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(tmp_path),
        "-c",
        conf,
        "-k",
        "sync",
        "app.main:app",
    ]
    assert env["WORKER_CLASS"] == "sync"


def test_default_worker_is_meinheld(start: ModuleType, tmp_path: Path) -> None:
    make_app(tmp_path, {"main_default.py": APP})
    argv, _ = start.prepare({"APP_DIR": str(tmp_path), "APP_MODULE": "main_default:app"})
    assert argv[argv.index("-k") + 1] == "egg:meinheld#gunicorn_worker"


@pytest.mark.parametrize(
    ("files", "env", "status", "line"),
    [
        ({}, {}, 2, "start: MODULE_NAME is not set and no app module was found"),
        ({"main.py": "import nothing_here\n"}, {}, 3, "start: APP_MODULE='main:app' does not import"),
        ({"main.py": APP}, {"MODULE_NAME": "nope"}, 2, "start: APP_MODULE='nope:app' does not import"),
        ({"main.py": APP}, {"GUNICORN_CONF": "x.py"}, 2, "start: GUNICORN_CONF='x.py' is invalid"),
        ({}, {"APP_DIR": "/nonexistent/app"}, 2, "start: APP_DIR='/nonexistent/app' is invalid"),
    ],
    ids=["no-module", "import-fails", "wrong-module-name", "no-conf", "no-app-dir"],
)
def test_launcher_fails_with_one_line(tmp_path: Path, files: dict, env: dict, status: int, line: str) -> None:
    """2: a setting is wrong, final. 3: the app failed while importing (its database?), retried after a wait."""
    make_app(tmp_path, files)
    result = subprocess.run(
        [sys.executable, str(FILES / "start.py")],
        env={"PATH": os.environ["PATH"], "APP_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == status
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(line)
    assert ("retried after 5 s" in result.stderr) is (status == 3)


def test_app_dir_keeps_the_release_link_unresolved(start: ModuleType, tmp_path: Path) -> None:
    """Gunicorn chdirs through APP_DIR again at every reload: a resolved path would pin the release it started with."""
    release = tmp_path / "releases" / "r1"
    make_app(release, {"main.py": APP})
    (tmp_path / "app").symlink_to("releases/r1")
    argv, _ = start.prepare({"APP_DIR": str(tmp_path / "app")})
    assert argv[argv.index("--chdir") + 1] == str(tmp_path / "app")


@pytest.mark.parametrize(
    ("files", "returncode", "stream", "line"),
    [
        ({"main.py": APP}, 0, "stdout", "start: ok, would exec "),
        ({"main.py": "raise RuntimeError('broken release')\n"}, 3, "stderr", "start: APP_MODULE='main:app' does not"),
    ],
    ids=["good", "broken"],
)
def test_check_mode_runs_every_check_and_execs_nothing(
    tmp_path: Path, files: dict, returncode: int, stream: str, line: str
) -> None:
    make_app(tmp_path, files)
    result = subprocess.run(
        [sys.executable, str(FILES / "start.py"), "--check"],
        env={"PATH": os.environ["PATH"], "APP_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == returncode
    assert getattr(result, stream).startswith(line)


def test_boot_drop_ins_lay_over_the_env_file_in_name_order(start: ModuleType, tmp_path: Path) -> None:
    drop_ins = tmp_path / "demo.env.d"
    drop_ins.mkdir()
    (drop_ins / "10-cloud-init.env").write_text('WORKERS_PER_CORE="1"\nGREETING="from user-data"\n')
    (drop_ins / "20-secrets.env").write_text('SECRET_KEY="s3cr3t"\nGREETING="later wins"\n')
    (drop_ins / "ignored.conf").write_text("WORKERS_PER_CORE=9\n")
    env = start.with_drop_ins({"ENV_DROP_IN_DIR": str(drop_ins), "WORKERS_PER_CORE": "2", "LOG_LEVEL": "info"})
    assert (env["WORKERS_PER_CORE"], env["GREETING"], env["SECRET_KEY"], env["LOG_LEVEL"]) == (
        "1",
        "later wins",
        "s3cr3t",
        "info",
    )


def test_a_missing_drop_in_directory_is_no_drop_in(start: ModuleType, tmp_path: Path) -> None:
    assert start.with_drop_ins({"ENV_DROP_IN_DIR": str(tmp_path / "none"), "A": "1"}) == {
        "ENV_DROP_IN_DIR": str(tmp_path / "none"),
        "A": "1",
    }


def test_a_drop_in_cannot_move_the_app(start: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "x.env").write_text("APP_DIR=/tmp/evil\n")
    with pytest.raises(start.LaunchError, match="APP_DIR is invalid here: the unit sets it"):
        start.with_drop_ins({"ENV_DROP_IN_DIR": str(tmp_path)})


@pytest.mark.parametrize(
    ("env", "actual", "refused"),
    [
        ({}, ("0.0.0.0", 80), False),
        ({"PORT": "8000"}, ("0.0.0.0", 80), True),  # the hand edit of the issue: PORT=8000, socket still on 80
        ({"HOST": "127.0.0.1"}, ("0.0.0.0", 80), True),
        ({"BIND": "[::]:80"}, ("::", 80), False),
        ({"BIND": "localhost:80"}, ("127.0.0.1", 80), False),  # a host name: only the port can be compared
        ({"BIND": "unix:/run/gunicorn/demo/app.sock"}, ("unix", "/run/gunicorn/demo/app.sock"), False),
        ({"BIND": "unix:/run/gunicorn/demo/app.sock"}, ("0.0.0.0", 80), True),
        ({"PORT": "8000"}, None, False),  # no socket from systemd (a manual run): nothing to compare
    ],
)
def test_a_start_whose_address_left_the_socket_is_refused(
    start: ModuleType, env: dict[str, str], actual: tuple | None, refused: bool
) -> None:
    if refused:
        with pytest.raises(start.LaunchError, match=r"listens on .*rerun the playbook") as raised:
            start.check_listen_matches(env, actual)
        assert raised.value.retry is False
    else:
        start.check_listen_matches(env, actual)


def test_inherited_address_reads_the_socket_systemd_passes(start: ModuleType) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        assert start.inherited_address(server.fileno()) == ("127.0.0.1", server.getsockname()[1])


def test_retry_waits_grow_and_keep_under_the_start_limit(start: ModuleType) -> None:
    """Waits 5, 10, 20, 40, 60...; with RestartSec=2 no 60 s window holds 5 starts (StartLimitBurst)."""
    waits = [start.retry_wait(n) for n in range(1, 9)]
    assert waits == [5, 10, 20, 40, 60, 60, 60, 60]
    starts, t = [], 0.0
    for wait in waits:
        starts.append(t)
        t += wait + 2
    assert max(sum(1 for s in starts if first <= s < first + 60) for first in starts) < 5


def test_consecutive_failures_are_counted_until_a_start_succeeds(start: ModuleType, tmp_path: Path) -> None:
    assert [start.count_attempt(str(tmp_path)) for _ in range(3)] == [1, 2, 3]
    start.forget_attempts(str(tmp_path))
    assert start.count_attempt(str(tmp_path)) == 1


def test_a_prestart_that_replaces_the_exit_trap_and_exits_is_refused(start: ModuleType, tmp_path: Path) -> None:
    """Its exports cannot be captured; starting Gunicorn with an empty environment (no LISTEN_FDS) would be worse."""
    make_app(tmp_path, {"prestart.sh": "trap 'echo bye >&2' EXIT\nexport FROM_PRESTART=yes\nexit 0\n"})
    with pytest.raises(start.LaunchError, match="handed over no environment: it replaced the launcher's EXIT trap"):
        start.run_prestart(tmp_path, {"KEPT": "1", "LISTEN_FDS": "1"})
