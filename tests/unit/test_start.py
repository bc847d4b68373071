"""files/start.py: app and config lookup as the image does it, prestart exports, the import check, the exec line."""

from __future__ import annotations

import os
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
    ("files", "env", "line"),
    [
        ({}, {}, "start: MODULE_NAME is not set and no app module was found"),
        ({"main.py": "import nothing_here\n"}, {}, "start: APP_MODULE='main:app' does not import"),
        ({"main.py": APP}, {"GUNICORN_CONF": "x.py"}, "start: GUNICORN_CONF='x.py' is invalid"),
        ({}, {"APP_DIR": "/nonexistent/app"}, "start: APP_DIR='/nonexistent/app' is invalid"),
    ],
)
def test_launcher_fails_with_one_line(tmp_path: Path, files: dict, env: dict, line: str) -> None:
    make_app(tmp_path, files)
    result = subprocess.run(
        [sys.executable, str(FILES / "start.py")],
        env={"PATH": os.environ["PATH"], "APP_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(line)


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
        ({"main.py": "raise RuntimeError('broken release')\n"}, 2, "stderr", "start: APP_MODULE='main:app' does not"),
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
