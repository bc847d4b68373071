"""Launcher the systemd unit runs: find the app and its config as the Docker image's start.sh does, then exec Gunicorn.

Run it with the app venv's interpreter. It reads APP_DIR (default: the current directory) and the image's variables,
sources the app's prestart script so that what it exports reaches Gunicorn, checks that APP_MODULE imports, and replaces
itself with Gunicorn, so Gunicorn is the unit's main process (Type=notify, ExecReload=HUP, KillMode=mixed rely on it).
Standard library only. Errors print one line that names the variable and the value, and exit 2.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

# The runtime rules beside this file (when run as a script, Python puts this directory first on sys.path already).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gunicorn_conf import env_value

DEFAULT_VARIABLE_NAME = "app"
DEFAULT_WORKER_CLASS = "egg:meinheld#gunicorn_worker"
BUNDLED_CONF = Path(__file__).resolve().with_name("gunicorn_conf.py")
# Variables the shell sets on its own; they are not the prestart script's exports.
SHELL_VARIABLES = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
EXIT_CONFIG_ERROR = 2


class LaunchError(Exception):
    """The app or its configuration cannot be started as given; the message says which variable and why."""


def module_name(app_dir: Path, env: Mapping[str, str]) -> str:
    """MODULE_NAME, else `app.main` when app/main.py exists, else `main` when main.py exists."""
    given = env_value(env, "MODULE_NAME")
    if given:
        return given
    candidates = (("app/main.py", "app.main"), ("main.py", "main"))
    for relative, name in candidates:
        if (app_dir / relative).is_file():
            return name
    looked_at = ", ".join(str(app_dir / relative) for relative, _ in candidates)
    raise LaunchError(f"MODULE_NAME is not set and no app module was found (looked at {looked_at})")


def app_module(app_dir: Path, env: Mapping[str, str]) -> str:
    """APP_MODULE, else MODULE_NAME:VARIABLE_NAME."""
    given = env_value(env, "APP_MODULE")
    if given:
        return given
    return f"{module_name(app_dir, env)}:{env_value(env, 'VARIABLE_NAME') or DEFAULT_VARIABLE_NAME}"


def gunicorn_conf(app_dir: Path, env: Mapping[str, str], bundled: Path = BUNDLED_CONF) -> Path:
    """GUNICORN_CONF, else the app's gunicorn_conf.py, else app/gunicorn_conf.py, else the suite's own."""
    given = env_value(env, "GUNICORN_CONF")
    if given:
        path = app_dir / given
        if not path.is_file():
            raise LaunchError(f"GUNICORN_CONF={given!r} is invalid: {path} is not a file")
        return path
    for candidate in (app_dir / "gunicorn_conf.py", app_dir / "app" / "gunicorn_conf.py"):
        if candidate.is_file():
            return candidate
    return bundled


def run_prestart(app_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """Source the prestart script with `sh -e` and return the environment it leaves, or `env` when there is none.

    The environment is taken in an EXIT trap, so a script that ends with `exit 0` still hands over its exports.
    """
    given = env_value(env, "PRE_START_PATH")
    script = app_dir / given if given else app_dir / "prestart.sh"
    if not script.is_file():
        if given:
            raise LaunchError(f"PRE_START_PATH={given!r} is invalid: {script} is not a file")
        return dict(env)
    with tempfile.TemporaryFile() as exported:
        fd = exported.fileno()
        shell = f"trap 'env -0 >/dev/fd/{fd}' EXIT; . \"$1\" >&2"
        # The script's stdout goes to stderr: the journal gets its output, and it cannot corrupt the handover.
        argv = ["/bin/sh", "-ec", shell, "sh", str(script)]
        result = subprocess.run(argv, env=dict(env), cwd=app_dir, pass_fds=(fd,), check=False)
        if result.returncode != 0:
            raise LaunchError(f"PRE_START_PATH={str(script)!r} failed with exit status {result.returncode}")
        exported.seek(0)
        entries = exported.read().decode("utf-8", "surrogateescape").split("\0")
    names_values = (entry.partition("=") for entry in entries if "=" in entry)
    return {name: value for name, _, value in names_values if name not in SHELL_VARIABLES}


@contextlib.contextmanager
def _as_the_app_sees_it(app_dir: Path, env: Mapping[str, str]) -> Iterator[None]:
    """Import with the app dir first on sys.path, as the working directory and with the final environment."""
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(app_dir)
    sys.path.insert(0, str(app_dir))
    try:
        yield
    finally:
        sys.path.remove(str(app_dir))
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def check_app_imports(app_dir: Path, target: str, env: Mapping[str, str]) -> None:
    """Import APP_MODULE here, before Gunicorn forks workers, so a broken app fails the start with one line.

    Gunicorn itself would report the failure from a worker, after systemd already saw the service as started.
    """
    module, sep, variable = target.partition(":")
    if not module or not sep or not variable:
        raise LaunchError(f"APP_MODULE={target!r} is invalid: expected MODULE:VARIABLE")
    with _as_the_app_sees_it(app_dir, env):
        try:
            loaded = importlib.import_module(module)
        except (Exception, SystemExit) as error:
            raise LaunchError(f"APP_MODULE={target!r} does not import: {type(error).__name__}: {error}") from None
    name = variable.split("(", 1)[0].strip()  # Gunicorn also accepts an app factory call: module:create_app()
    if not hasattr(loaded, name):
        raise LaunchError(f"APP_MODULE={target!r} is invalid: module {module!r} has no attribute {name!r}")


def gunicorn_argv(python: str, app_dir: Path, conf: Path, target: str, worker_class: str) -> list[str]:
    """The command line Gunicorn is exec'd with; -k on the command line wins over a custom config, as in the image."""
    return [python, "-m", "gunicorn", "--chdir", str(app_dir), "-c", str(conf), "-k", worker_class, target]


def prepare(environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Resolve everything a start needs; raise LaunchError before anything is exec'd."""
    # Absolute, not resolved: APP_DIR is the `current` release link, and Gunicorn must chdir through the link again at
    # every graceful reload to pick up the release it points to then.
    app_dir = Path(os.path.abspath(env_value(environ, "APP_DIR") or os.getcwd()))
    if not app_dir.is_dir():
        raise LaunchError(f"APP_DIR={str(app_dir)!r} is invalid: not a directory")
    env = run_prestart(app_dir, environ)
    target = app_module(app_dir, env)
    conf = gunicorn_conf(app_dir, env)
    check_app_imports(app_dir, target, env)
    worker_class = env_value(env, "WORKER_CLASS") or DEFAULT_WORKER_CLASS
    return gunicorn_argv(sys.executable, app_dir, conf, target, worker_class), env


def main(args: list[str] = sys.argv[1:]) -> None:
    """Exec Gunicorn, or print one line naming what is wrong and exit 2.

    `--check` stops after the checks (prestart, module lookup, config file, import): the app role runs it on a new
    release before the `current` link moves, so a release that cannot start never replaces one that serves.
    """
    try:
        argv, env = prepare(os.environ)
    except LaunchError as error:
        print(f"start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    if "--check" in args:
        print(f"start: ok, would exec {' '.join(argv)}", flush=True)
        return
    print(f"start: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
