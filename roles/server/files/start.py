"""Launcher the systemd unit runs: find the app and its config as the Docker image's start.sh does, then exec Gunicorn.

Run it with the app venv's interpreter. It reads APP_DIR (default: the current directory) and the image's variables,
sources the app's prestart script so that what it exports reaches Gunicorn, checks that APP_MODULE imports, and replaces
itself with Gunicorn, so Gunicorn is the unit's main process (Type=notify, ExecReload=HUP, KillMode=mixed rely on it).
Standard library only.

Before anything else it reads the boot-time settings: every ``*.env`` file of ENV_DROP_IN_DIR (the unit names
``/etc/gunicorn/NAME.env.d``), in name order, over what the unit's env file set. That is where cloud-init user-data and
other boot-time tools put settings and secrets, so one image serves many environments.

Exit statuses: 2 for a static configuration error (one line names the variable and the value; the unit does not
retry it), 3 for a failure that may pass by itself (prestart.sh or the app's import failed, e.g. its database is not
up yet at first boot): the unit retries it, and the launcher waits longer before each consecutive retry.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

# The runtime rules beside this file (when run as a script, Python puts this directory first on sys.path already).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gunicorn_conf import UNIT_VARIABLES, ConfigError, env_value, read_env_file, resolve_bind

DEFAULT_VARIABLE_NAME = "app"
DEFAULT_WORKER_CLASS = "egg:meinheld#gunicorn_worker"
BUNDLED_CONF = Path(__file__).resolve().with_name("gunicorn_conf.py")
# Variables the shell sets on its own; they are not the prestart script's exports.
SHELL_VARIABLES = frozenset({"PWD", "OLDPWD", "SHLVL", "_"})
EXIT_CONFIG_ERROR = 2
EXIT_RETRY = 3
# The first systemd-passed socket (sd_listen_fds: SD_LISTEN_FDS_START).
LISTEN_FD = 3
RETRY_FILE = "start-attempts"
MAX_RETRY_WAIT = 60.0


class LaunchError(Exception):
    """The app or its configuration cannot be started as given; the message says which variable and why.

    retry=True marks a failure that may pass by itself (exit 3, retried by the unit); else it is final (exit 2).
    """

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def with_drop_ins(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with every ENV_DROP_IN_DIR/*.env file laid over it, in name order (later files win).

    A missing directory is no drop-in at all; a drop-in that sets a variable the unit sets is a configuration error.
    """
    env = dict(environ)
    directory = env_value(environ, "ENV_DROP_IN_DIR")
    if directory is None or not os.path.isdir(directory):
        return env
    for path in sorted(Path(directory).glob("*.env")):
        try:
            values = read_env_file(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise LaunchError(f"ENV_DROP_IN_DIR file {str(path)!r} cannot be read: {error}") from None
        reserved = sorted(UNIT_VARIABLES & values.keys())
        if reserved:
            raise LaunchError(f"{path}: {reserved[0]} is invalid here: the unit sets it")
        env.update(values)
    return env


def inherited_address(fd: int = LISTEN_FD) -> tuple[str, str | int] | None:
    """(host, port) or ("unix", path) of the socket systemd passed as fd 3, or None when there is none."""
    try:
        with socket.socket(fileno=os.dup(fd)) as inherited:
            if inherited.family == socket.AF_UNIX:
                return ("unix", str(inherited.getsockname()))
            host, port = inherited.getsockname()[:2]
            return (str(host), int(port))
    except OSError:
        return None


def check_listen_matches(env: Mapping[str, str], actual: tuple[str, str | int] | None) -> None:
    """Refuse a start whose HOST/PORT/BIND no longer say where systemd's socket listens (a hand edit, a boot drop-in).

    systemd binds the socket (gunicorn@NAME.socket) from a drop-in the deploy writes; Gunicorn serves whatever socket it
    is handed. Serving on the old address while the settings say another would be a silent lie.
    """
    if actual is None:
        return
    try:
        wanted = resolve_bind(env)
    except ConfigError as error:
        raise LaunchError(str(error)) from None
    if wanted["bind"].startswith("unix:"):
        same = actual == ("unix", wanted["bind"][len("unix:") :])
    elif wanted["port"] is None:  # fd://N: the socket is whatever the operator handed over
        same = True
    else:
        host, port = actual
        same = port == wanted["port"] and (host == wanted["host"] or not _is_ip(wanted["host"]))
    if not same:
        where = f"unix:{actual[1]}" if actual[0] == "unix" else f"{actual[0]}:{actual[1]}"
        raise LaunchError(
            f"HOST/PORT/BIND say {wanted['bind']} but the unit's socket listens on {where}: where an app listens is "
            "set at deploy time; change it in the app's env (app_list) and rerun the playbook, or set it back"
        )


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def retry_wait(attempt: int) -> float:
    """Seconds to wait before exiting 3 after the attempt-th consecutive failure: 5, 10, 20, 40, then 60.

    With the unit's RestartSec, at most four starts fall in any 60 s, under StartLimitBurst=5: the unit keeps
    retrying every minute or so instead of giving up, without hammering what it waits for.
    """
    return min(5.0 * 2 ** (attempt - 1), MAX_RETRY_WAIT)


def count_attempt(state_dir: str | None) -> int:
    """Record one more consecutive failed start in the unit's StateDirectory; the number of failures so far."""
    if not state_dir:
        return 1
    path = Path(state_dir.split(":")[0]) / RETRY_FILE
    try:
        attempt = int(path.read_text().strip() or 0) + 1
    except (OSError, ValueError):
        attempt = 1
    with contextlib.suppress(OSError):
        path.write_text(f"{attempt}\n")
    return attempt


def forget_attempts(state_dir: str | None) -> None:
    """A start that got as far as Gunicorn resets the count."""
    if state_dir:
        with contextlib.suppress(OSError):
            (Path(state_dir.split(":")[0]) / RETRY_FILE).unlink()


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

    The environment is taken after the script (and in an EXIT trap, so a script that ends with `exit 0` still hands
    over its exports); an empty capture is an error, never an empty environment for Gunicorn.
    """
    given = env_value(env, "PRE_START_PATH")
    script = app_dir / given if given else app_dir / "prestart.sh"
    if not script.is_file():
        if given:
            raise LaunchError(f"PRE_START_PATH={given!r} is invalid: {script} is not a file")
        return dict(env)
    with tempfile.TemporaryFile() as exported:
        fd = exported.fileno()
        # After the script, the capture is a command of ours, which nothing in the script can replace; the EXIT trap
        # covers a script that ends with `exit`. A script that exits early after replacing that trap with its own
        # leaves no capture, which is refused below rather than starting Gunicorn with an empty environment.
        capture = f"env -0 >/dev/fd/{fd}"
        shell = f"trap '{capture}' EXIT; . \"$1\" >&2; trap - EXIT; {capture}"
        # The script's stdout goes to stderr: the journal gets its output, and it cannot corrupt the handover.
        argv = ["/bin/sh", "-ec", shell, "sh", str(script)]
        result = subprocess.run(argv, env=dict(env), cwd=app_dir, pass_fds=(fd,), check=False)
        if result.returncode != 0:
            message = f"PRE_START_PATH={str(script)!r} failed with exit status {result.returncode}"
            raise LaunchError(message, retry=True)
        exported.seek(0)
        entries = exported.read().decode("utf-8", "surrogateescape").split("\0")
    if not any("=" in entry for entry in entries):
        raise LaunchError(
            f"PRE_START_PATH={str(script)!r} handed over no environment: it replaced the launcher's EXIT trap and "
            "exited; end it without `exit`, or run its own cleanup before"
        )
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
            # The module itself missing is a wrong setting; anything raised while it imports may pass (a database).
            missing = isinstance(error, ModuleNotFoundError) and error.name in _parents(module)
            message = f"APP_MODULE={target!r} does not import: {type(error).__name__}: {error}"
            raise LaunchError(message, retry=not missing) from None
    name = variable.split("(", 1)[0].strip()  # Gunicorn also accepts an app factory call: module:create_app()
    if not hasattr(loaded, name):
        raise LaunchError(f"APP_MODULE={target!r} is invalid: module {module!r} has no attribute {name!r}")


def _parents(module: str) -> set[str]:
    """'app.main' -> {'app', 'app.main'}: the names whose absence means the module path itself is wrong."""
    parts = module.split(".")
    return {".".join(parts[: i + 1]) for i in range(len(parts))}


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
    env = run_prestart(app_dir, with_drop_ins(environ))
    check_listen_matches(env, inherited_address() if env_value(env, "LISTEN_FDS") else None)
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
    checking = "--check" in args
    state_dir = None if checking else env_value(os.environ, "STATE_DIRECTORY")
    try:
        argv, env = prepare(os.environ)
    except LaunchError as error:
        if not error.retry:
            print(f"start: {error}", file=sys.stderr, flush=True)
            raise SystemExit(EXIT_CONFIG_ERROR) from None
        wait = 0.0 if checking else retry_wait(count_attempt(state_dir))
        later = f"; may pass by itself: exit {EXIT_RETRY}, retried" + (f" after {wait:.0f} s" if wait else "")
        print(f"start: {error}{later}", file=sys.stderr, flush=True)
        time.sleep(wait)
        raise SystemExit(EXIT_RETRY) from None
    if checking:
        print(f"start: ok, would exec {' '.join(argv)}", flush=True)
        return
    forget_attempts(state_dir)
    print(f"start: exec {' '.join(argv)}", file=sys.stderr, flush=True)
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
