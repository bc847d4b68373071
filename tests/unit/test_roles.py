"""The roles' input checks (plugins/filter/app_inputs.py), the listening-port module, and the roles' self-description.

Every bad input of the matrix must produce one message that names the variable and its value; every good input none.
The argument specs, the defaults and their comments must describe the same variables, so the docs cannot drift.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import socket
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.conftest import load_app_filters, load_module

REPO = Path(__file__).resolve().parents[2]
ROLES = ("interpreter", "server", "app")
# Roles whose argument specs and READMEs are checked against their defaults. The balancer's defaults share one comment
# per group of related variables (listen address and port, the check rhythm, ...), so the comment check skips it.
SPEC_ROLES = (*ROLES, "balancer")
EXAMPLE = str(REPO / "example_app")


@pytest.fixture(scope="module")
def filters() -> ModuleType:
    return load_app_filters()


@pytest.fixture(scope="module")
def listeners_module() -> ModuleType:
    return load_module(REPO / "plugins" / "module_utils" / "listeners.py")


def app(**fields: object) -> dict[str, object]:
    return {"name": "web", "path": EXAMPLE, **fields}


@pytest.mark.parametrize(
    ("apps", "expected"),
    [
        ("not a list", "app_list='not a list' is invalid"),
        (["web"], "app_list[0]='web' is invalid"),
        ([app(name="Web")], "app_list[0].name='Web' is invalid"),
        ([app(name="web@x")], "app_list[0].name='web@x' is invalid"),
        ([app(name="a" * 33)], "is invalid: expected a valid unit instance"),
        ([app(name=None)], "app_list[0].name=None is invalid"),
        ([app(), app()], "app_list[1] (web).name='web' is a duplicate of app_list[0]"),
        ([app(), app(name="api")], "app_list[1] (api) port 80 is already used by app 'web'"),
        ([app(port=8000), app(name="api", env={"PORT": "8000"})], "port 8000 is already used by app 'web'"),
        ([app(port=8000), app(name="api", env={"BIND": "127.0.0.1:8000"})], "port 8000 is already used"),
        (
            [
                app(env={"METRICS_BIND": "127.0.0.1:9101"}),
                app(name="api", port=81, env={"METRICS_BIND": "0.0.0.0:9101"}),
            ],
            "app_list[1] (api) port 9101 is already used by app 'web'",
        ),
        ([app(port=8000), app(name="api", env={"METRICS_BIND": "127.0.0.1:8000"})], "port 8000 is already used"),
        ([app(env={"METRICS_BIND": "127.0.0.1:80"})], "env.METRICS_BIND='127.0.0.1:80' is invalid"),
        ([app(env={"ACCESS_LOG_FORMAT": "json"})], "env.ACCESS_LOG_FORMAT='json' is invalid"),
        ([app(state="gone")], "app_list[0] (web).state='gone' is invalid"),
        ([app(port=99999)], "app_list[0] (web).port=99999 is invalid"),
        ([app(port=0)], "app_list[0] (web).port=0 is invalid"),
        ([app(env={"PORT": "99999"})], "env.PORT='99999' is invalid"),
        ([app(env={"PORT": "http"})], "env.PORT='http' is invalid"),
        ([app(port=80, env={"PORT": "81"})], "env.PORT='81' contradicts port=80"),
        ([app(env={"WORKERS_PER_CORE": "abc"})], "env.WORKERS_PER_CORE='abc' is invalid"),
        ([app(env={"WORKERS_PER_CORE": "0"})], "env.WORKERS_PER_CORE='0' is invalid"),
        ([app(env={"WORKERS_PER_CORE": "-1"})], "env.WORKERS_PER_CORE='-1' is invalid"),
        ([app(env={"WORKERS_PER_CORE": "nan"})], "env.WORKERS_PER_CORE='nan' is invalid"),
        ([app(env={"WEB_CONCURRENCY": "0"})], "env.WEB_CONCURRENCY='0' is invalid"),
        ([app(env={"MAX_WORKERS": "x"})], "env.MAX_WORKERS='x' is invalid"),
        ([app(env={"TIMEOUT": "-5"})], "env.TIMEOUT='-5' is invalid"),
        ([app(env={"LOG_LEVEL": "loud"})], "env.LOG_LEVEL='loud' is invalid: expected one of debug, info"),
        ([app(secret_env={"LOG_LEVEL": "loud"})], "secret_env.LOG_LEVEL (value hidden) is invalid"),
        ([app(env={"BIND": "0.0.0.0:70000"})], "env.BIND='0.0.0.0:70000' is invalid"),
        ([app(env={"APP_DIR": "/etc"})], "env.APP_DIR='/etc' is invalid: the unit sets APP_DIR itself"),
        ([app(env={"GUNICORN_CONF": "/etc/passwd"})], "env.GUNICORN_CONF='/etc/passwd' is invalid: the path"),
        ([app(env={"PRE_START_PATH": "../../x.sh"})], "env.PRE_START_PATH='../../x.sh' is invalid"),
        ([app(env={"bad-key": "1"})], "env key 'bad-key' is invalid"),
        ([app(env={"X": "two\nlines"})], "env.X is invalid: a value must be one line"),
        ([app(env=["X=1"])], "env=['X=1'] is invalid"),
        ([app(path="/nonexistent/dir")], "app_list[0] (web).path='/nonexistent/dir' is invalid"),
        ([app(source="svn")], "source='svn' is invalid"),
        ([{"name": "web", "source": "git"}], "app_list[0] (web).repo is missing"),
        ([{"name": "web", "source": "pip", "requirement": "x==1"}], "env.APP_MODULE is missing"),
        ([{"name": "web", "source": "pip"}], "requirement is missing"),
        # The security review's hostile values: each must be refused, named, before the host changes.
        ([app(env={"LD_PRELOAD": "/tmp/x.so"})], "env.LD_PRELOAD='/tmp/x.so' is invalid: LD_PRELOAD steers how"),
        ([app(secret_env={"PYTHONHOME": "/tmp"})], "secret_env.PYTHONHOME (value hidden) is invalid: PYTHONHOME"),
        ([app(env={"BIND": "unix:/etc/passwd"})], "a unix socket of this app must be unix:/run/gunicorn/web.sock"),
        ([app(env={"BIND": "unix:/run/gunicorn/other.sock"})], "must be unix:/run/gunicorn/web.sock"),
        (
            [{"name": "web", "source": "pip", "requirement": "-r /etc/shadow", "env": {"APP_MODULE": "m:app"}}],
            "requirement='-r /etc/shadow' is invalid: expected one requirement, not pip options",
        ),
        (
            [{"name": "web", "requirement": "x==1 --index-url=http://evil", "env": {"APP_MODULE": "m:app"}}],
            "expected one requirement, not pip options",
        ),
        ([app(health_path="http://evil.example/")], "health_path='http://evil.example/' is invalid"),
        ([app(health_path="/ok path")], "health_path='/ok path' is invalid"),
        (
            [{"name": "web", "repo": "https://example.invalid/a.git", "version": "--upload-pack=id"}],
            "version='--upload-pack=id' is invalid",
        ),
        ([{"name": "web\n", "path": EXAMPLE}], "name='web\\n' is invalid"),
        ([{"name": "web", "source": "local"}], "path is missing"),
    ],
)
def test_bad_input_is_named(filters: ModuleType, apps: object, expected: str) -> None:
    errors = filters.app_input_errors(apps, "/srv", {}, [], "/")
    assert len(errors) == 1, errors
    assert expected in errors[0]


@pytest.mark.parametrize(
    "apps",
    [
        [],
        [app()],
        [app(port=8080, env={"WORKERS_PER_CORE": "0.5", "LOG_LEVEL": "DEBUG", "WEB_CONCURRENCY": 3})],
        [app(), app(name="api", port=8081)],
        [app(), app(name="api", state="absent")],
        [app(env={"BIND": "unix:/run/gunicorn/web.sock"}), app(name="api")],
        [app(env={"GUNICORN_CONF": "conf/gunicorn.py", "PRE_START_PATH": "scripts/pre.sh"})],
        [{"name": "web", "repo": "https://example.invalid/app.git", "version": "v1"}],
        [{"name": "web", "requirement": "mypkg==1.0", "env": {"APP_MODULE": "mypkg.wsgi:app"}}],
        [{"name": "web", "requirement": "greeter @ file:///opt/greeter-1.0.whl", "env": {"APP_MODULE": "g:app"}}],
        [app(name="_x-1")],
    ],
)
def test_good_input_passes(filters: ModuleType, apps: list[dict[str, object]]) -> None:
    assert filters.app_input_errors(apps, "/srv", {}, [], "/") == []


def test_relative_local_path_is_relative_to_the_playbook_dir(filters: ModuleType) -> None:
    apps = [{"name": "web", "path": "../example_app"}]
    assert filters.app_input_errors(apps, "/srv", {}, [], str(REPO / "playbooks")) == []
    assert filters.app_normalize(apps, str(REPO / "playbooks"), "/srv")[0]["path"] == EXAMPLE


@pytest.mark.parametrize(
    ("listeners", "expected"),
    [
        ([{"port": 80, "units": ["nginx.service"]}], ["(web) port 80 is held by nginx.service on the host"]),
        ([{"port": 80, "units": ["gunicorn@web.service"]}], []),
        ([{"port": 80, "units": ["gunicorn@old.service"]}], ["port 80 is held by gunicorn@old.service"]),
        ([{"port": 8080, "units": ["nginx.service"]}], []),
    ],
)
def test_a_port_held_on_the_host_is_refused(
    filters: ModuleType, listeners: list[dict[str, object]], expected: list[str]
) -> None:
    errors = filters.app_input_errors([app()], "/srv", {}, listeners, "/")
    assert len(errors) == len(expected)
    for error, wanted in zip(errors, expected, strict=True):
        assert wanted in error


def test_a_port_of_an_app_removed_in_the_same_run_is_free(filters: ModuleType) -> None:
    apps = [app(), {"name": "old", "state": "absent"}]
    assert filters.app_input_errors(apps, "/srv", {}, [{"port": 80, "units": ["gunicorn@old.service"]}], "/") == []


@pytest.mark.parametrize(
    ("accounts", "errors"),
    [
        ({"web": ["x", "999", "999", "gunicorn@web.service", "/srv/web", "/usr/sbin/nologin"]}, 0),
        ({"web": ["x", "0", "0", "root", "/root", "/bin/bash"]}, 1),
        ({"other": ["x", "0", "0", "", "/root", "/bin/bash"]}, 0),
    ],
)
def test_an_app_name_may_not_take_over_an_existing_account(
    filters: ModuleType, accounts: dict[str, list[str]], errors: int
) -> None:
    found = filters.app_input_errors([app()], "/srv", accounts, [], "/")
    assert len(found) == errors
    if errors:
        assert "collides with the existing account 'web'" in found[0]


def test_normalize_fills_every_field(filters: ModuleType) -> None:
    (web,) = filters.app_normalize([app(port=8080, env={"WORKERS_PER_CORE": 1, "DEBUG": True})], "/", "/srv")
    assert web["state"] == "present"
    assert web["source"] == "local"
    assert web["env"] == {"WORKERS_PER_CORE": "1", "DEBUG": "true", "PORT": "8080"}
    assert web["secret_keys"] == []
    assert web["health_url"] == "http://127.0.0.1:8080/"
    assert web["health_status"] == 200


@pytest.mark.parametrize(
    ("fields", "url"),
    [
        ({}, "http://127.0.0.1:80/"),
        ({"env": {"HOST": "10.0.0.5", "PORT": "81"}}, "http://10.0.0.5:81/"),
        ({"env": {"BIND": "127.0.0.2:9000"}, "health_path": "/health"}, "http://127.0.0.2:9000/health"),
        ({"env": {"BIND": "unix:/run/gunicorn/web.sock"}}, None),
    ],
)
def test_health_url(filters: ModuleType, fields: dict[str, object], url: str | None) -> None:
    assert filters.app_normalize([app(**fields)], "/", "/srv")[0]["health_url"] == url


def test_local_files_leave_caches_and_vcs_behind(filters: ModuleType, tmp_path: Path) -> None:
    for rel in ("main.py", "pkg/mod.py", "pkg/__pycache__/mod.cpython-311.pyc", ".git/HEAD", "venv/bin/python"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    apps = filters.app_normalize([{"name": "web", "path": str(tmp_path)}], "/", "/srv")
    listed = filters.app_local_files(apps, ["__pycache__", "*.pyc", ".git", "venv"])
    assert [f["rel"] for f in listed["files"]] == ["main.py", "pkg/mod.py"]
    assert [d["rel"] for d in listed["dirs"]] == ["pkg"]
    (target,) = listed["targets"]
    assert {f["release"] for f in listed["files"]} == {target["release"]}


@pytest.mark.parametrize(
    ("shipped", "expected"),
    [
        ({"requirements.txt": b"flask==3.0.3\n"}, hashlib.sha1(b"flask==3.0.3\n").hexdigest()),
        ({"requirements.txt": b""}, hashlib.sha1(b"").hexdigest()),
        ({"pkg/requirements.txt": b"x\n"}, ""),  # only the top-level file is the release's requirements
        ({"requirements.txt.pyc": b"x"}, ""),  # excluded names are not shipped, so not read
        ({}, ""),
    ],
)
def test_local_requirements_are_hashed_as_stat_would(
    filters: ModuleType, tmp_path: Path, shipped: dict[str, bytes], expected: str
) -> None:
    """The venv key takes a stat's SHA-1 of the shipped requirements.txt: computed on the controller, the same value."""
    (tmp_path / "main.py").write_text("app = 1")
    for rel, content in shipped.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(content)
    apps = filters.app_normalize([{"name": "web", "path": str(tmp_path)}], "/", "/srv")
    (target,) = filters.app_local_files(apps, ["*.pyc"])["targets"]
    assert target["requirements"] == expected


def _release_of(filters: ModuleType, root: Path) -> str:
    apps = filters.app_normalize([{"name": "web", "path": str(root)}], "/", "/srv")
    (target,) = filters.app_local_files(apps, ["__pycache__"])["targets"]
    return target["release"]


@pytest.mark.parametrize(
    ("change", "same_release"),
    [
        (lambda root: None, True),
        (lambda root: (root / "pkg" / "__pycache__").mkdir(), True),
        (lambda root: (root / "main.py").write_text("app = 2"), False),
        (lambda root: (root / "main.py").rename(root / "other.py"), False),
        (lambda root: (root / "empty").mkdir(), False),
    ],
    ids=["unchanged", "cache-only", "content", "rename", "new-dir"],
)
def test_a_release_is_named_by_its_content(
    filters: ModuleType, tmp_path: Path, change: Callable[[Path], None], same_release: bool
) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "main.py").write_text("app = 1")
    before = _release_of(filters, tmp_path)
    change(tmp_path)
    after = _release_of(filters, tmp_path)
    assert before.startswith("local-")
    assert (before == after) is same_release


@pytest.fixture(scope="module")
def ship() -> ModuleType:
    return load_module(REPO / "plugins" / "action" / "app_ship_release.py")


def _shipped(ship: ModuleType, tmp_path: Path) -> tarfile.TarFile:
    """An app source with a package, a prestart.sh and a symlink, shipped as the archive the role sends."""
    root, archive = tmp_path / "src", tmp_path / "release.tar"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "mod.py").write_text("x = 1")
    (root / "main.py").write_text("app = 1")
    (root / "prestart.sh").write_text("#!/bin/sh\n")
    (root / "linked.py").symlink_to(root / "main.py")
    files = {rel: str(root / rel) for rel in ("main.py", "pkg/mod.py", "prestart.sh", "linked.py")}
    ship.build_archive(str(archive), "web", ["pkg"], files, ["prestart.sh"])
    return tarfile.open(archive)


@pytest.mark.parametrize(
    ("name", "mode", "kind"),
    [
        ("pkg", 0o750, tarfile.DIRTYPE),
        ("main.py", 0o640, tarfile.REGTYPE),
        ("pkg/mod.py", 0o640, tarfile.REGTYPE),
        ("prestart.sh", 0o750, tarfile.REGTYPE),
        ("linked.py", 0o640, tarfile.REGTYPE),
    ],
)
def test_a_shipped_release_is_root_owned_and_readable_by_the_app_group(
    ship: ModuleType, tmp_path: Path, name: str, mode: int, kind: bytes
) -> None:
    with _shipped(ship, tmp_path) as tar:
        assert tar.getnames() == ["pkg", "linked.py", "main.py", "pkg/mod.py", "prestart.sh"]
        info = tar.getmember(name)
    assert (info.mode, info.type, info.uname, info.gname, info.uid) == (mode, kind, "root", "web", 0)


def test_a_release_ships_inside_its_directory_and_ends_with_its_marker(ship: ModuleType, tmp_path: Path) -> None:
    """One extraction into releases/ makes the release directory; the marker comes last, so a stopped one has none."""
    source, archive = tmp_path / "main.py", tmp_path / "release.tar"
    source.write_text("app = 1")
    ship.build_archive(str(archive), "web", ["pkg"], {"main.py": str(source)}, [], top="r1", marker=".shipped")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["r1", "r1/pkg", "r1/main.py", "r1/.shipped"]
        top, marker = tar.getmember("r1"), tar.getmember("r1/.shipped")
    assert (top.type, top.mode, top.gname) == (tarfile.DIRTYPE, 0o750, "web")
    assert (marker.type, marker.mode, marker.size, marker.gname) == (tarfile.REGTYPE, 0o640, 0, "web")


def test_a_symlinked_file_is_shipped_as_its_content(ship: ModuleType, tmp_path: Path) -> None:
    with _shipped(ship, tmp_path) as tar:
        linked = tar.extractfile("linked.py")
        assert linked is not None and linked.read() == b"app = 1"


@pytest.mark.parametrize(
    ("commit", "release"),
    [("12d756a26cf074af36cdbafa97cdcbdd1571cc19", "git-12d756a26cf0"), ("ab" * 32, "git-abababababab")],
    ids=["sha1", "sha256"],
)
def test_a_git_release_is_named_by_its_commit(filters: ModuleType, commit: str, release: str) -> None:
    assert filters.app_git_release(commit) == release


@pytest.mark.parametrize("commit", ["", "HEAD", "v1.0", "12d756a26cf0"])
def test_a_git_release_needs_a_full_commit_id(filters: ModuleType, commit: str) -> None:
    with pytest.raises(ValueError, match="not a full git commit id"):
        filters.app_git_release(commit)


def _show(unit: str, load: str, active: str, file_state: str) -> str:
    return f"Id={unit}\nLoadState={load}\nActiveState={active}\nUnitFileState={file_state}\n"


@pytest.mark.parametrize(
    ("block", "stopped"),
    [
        (_show("gunicorn@a.service", "loaded", "active", "enabled"), True),
        (_show("gunicorn@a.service", "loaded", "inactive", "enabled"), True),
        (_show("gunicorn@a.socket", "loaded", "active", "disabled"), True),
        (_show("gunicorn@a.service", "loaded", "inactive", "disabled"), False),
        (_show("gunicorn@a.service", "loaded", "failed", "disabled"), False),
        (_show("gunicorn@a.socket", "bad-setting", "inactive", "disabled"), False),
        (_show("gunicorn@a.socket", "not-found", "inactive", ""), False),
    ],
    ids=["running", "enabled", "socket-listening", "gone", "failed", "no-listen-drop-in", "not-found"],
)
def test_absent_acts_only_on_units_that_run_or_are_enabled(filters: ModuleType, block: str, stopped: bool) -> None:
    other = _show("gunicorn@b.service", "loaded", "active", "enabled")
    expected = ["gunicorn@a.service" if ".service" in block else "gunicorn@a.socket"] if stopped else []
    assert filters.app_units_to_stop(block + "\n" + other) == [*expected, "gunicorn@b.service"]


@pytest.mark.parametrize(
    ("env", "listen", "port", "health_url"),
    [
        ({}, "0.0.0.0:80", 80, "http://127.0.0.1:80/"),
        ({"PORT": "8080", "HOST": "::"}, "[::]:8080", 8080, "http://127.0.0.1:8080/"),
        ({"BIND": "127.0.0.1"}, "127.0.0.1:8000", 8000, "http://127.0.0.1:8000/"),  # Gunicorn's default port
        ({"BIND": "[::1]"}, "[::1]:8000", 8000, "http://[::1]:8000/"),
        ({"BIND": "[::1]:9000", "PORT": "81"}, "[::1]:9000", 9000, "http://[::1]:9000/"),
        ({"HOST": "::1", "PORT": "81"}, "[::1]:81", 81, "http://[::1]:81/"),
        ({"BIND": "unix:/run/gunicorn/web.sock"}, "/run/gunicorn/web.sock", None, None),
    ],
)
def test_socket_health_and_port_read_one_resolved_bind(
    filters: ModuleType, env: dict[str, str], listen: str, port: int | None, health_url: str | None
) -> None:
    """The socket's ListenStream=, the port checks and the health URL all come from gunicorn_conf.resolve_bind."""
    [normal] = filters.app_normalize([app(env=env)], "/", "/srv")
    assert (normal["listen"], filters.app_effective_port(normal), normal["health_url"]) == (listen, port, health_url)


def test_a_bare_bind_host_collides_on_the_port_it_really_uses(filters: ModuleType) -> None:
    """BIND=127.0.0.1 listens on 8000: a holder of 8000 collides, a holder of 80 does not."""
    apps = [app(env={"BIND": "127.0.0.1"})]
    on_8000 = filters.app_input_errors(apps, "/srv", {}, [{"port": 8000, "units": ["nginx.service"]}], "/")
    on_80 = filters.app_input_errors(apps, "/srv", {}, [{"port": 80, "units": ["nginx.service"]}], "/")
    assert (on_8000, on_80) == (
        ["app_list[0] (web) port 8000 is held by nginx.service on the host: choose another port"],
        [],
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BIND": "fd://3"}, "BIND='fd://3' is invalid: systemd passes the app its socket"),
        ({"HOST": "localhost"}, "the host 'localhost' is invalid: systemd's socket listens on an IP address only"),
        ({"PORT": "\u0668\u0660"}, "env.PORT='\u0668\u0660' is invalid: expected a port number"),
    ],
)
def test_what_the_socket_cannot_hold_is_refused(filters: ModuleType, env: dict[str, str], expected: str) -> None:
    errors = filters.app_input_errors([app(env=env)], "/srv", {}, [], "/")
    assert len(errors) == 1
    assert expected in errors[0]


def test_listener_module_finds_a_listening_socket(listeners_module: ModuleType) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        found = {entry["port"]: entry["units"] for entry in listeners_module.listeners()}
    assert port in found
    assert found[port] != ["an unknown process"]


def _defaults(role: str) -> dict[str, object]:
    return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()) or {}


def _spec(role: str) -> dict[str, dict[str, object]]:
    return yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_every_default_is_in_the_argument_spec_with_the_same_default(role: str) -> None:
    options = _spec(role)["main"]["options"]
    for name, value in _defaults(role).items():
        assert name in options, f"{role}: {name} missing from meta/argument_specs.yml"
        assert options[name].get("default") == value, f"{role}: default of {name} differs"


@pytest.mark.parametrize("role", ROLES)
def test_every_default_has_a_comment(role: str) -> None:
    lines = (REPO / "roles" / role / "defaults" / "main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if re.match(r"^[a-z_]+:", line):
            assert lines[index - 1].startswith("#"), f"{role}: {line.split(':')[0]} has no comment above it"


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_every_entry_point_has_an_argument_spec(role: str) -> None:
    tasks = {p.stem for p in (REPO / "roles" / role / "tasks").glob("*.yml")}
    entry_points = set(_spec(role))
    assert "main" in entry_points
    assert "assert" in entry_points
    assert entry_points <= tasks


@pytest.mark.parametrize("role", SPEC_ROLES)
def test_every_variable_is_in_the_readme(role: str) -> None:
    readme = (REPO / "roles" / role / "README.md").read_text()
    for name in _spec(role)["main"]["options"]:
        assert f"`{name}`" in readme, f"{role}: README lacks {name}"


def test_site_checks_every_role_before_the_first_change() -> None:
    balancers, play = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    assert balancers["hosts"] == "lb"
    assert [r["role"] for r in balancers["roles"]] == ["balancer"]
    included = [t["ansible.builtin.include_role"] for t in play["pre_tasks"]]
    entries = [(role["name"], role["tasks_from"]) for role in included]
    # The server role's facts (no change) come before the app role's check, which reads their apps root; once every
    # input is good, the batch leaves rotation at the balancers (its first change) and comes back after the roles.
    # The host lock comes first of all (a second run stops before anything) and goes last.
    assert entries == [
        ("server", "lock"),
        ("interpreter", "assert"),
        ("server", "assert"),
        ("server", "facts"),
        ("app", "assert"),
        ("balancer", "assert"),  # the front's, for an app with `front: true`
        ("balancer", "drain"),
    ]
    assert [r["role"] for r in play["roles"]] == ["interpreter", "server", "app"]
    post = [
        (t["ansible.builtin.include_role"]["name"], t["ansible.builtin.include_role"]["tasks_from"])
        for t in play["post_tasks"]
    ]
    assert post == [("balancer", "front"), ("balancer", "ready"), ("server", "unlock")]
    front_check, front = play["pre_tasks"][5], play["post_tasks"][0]
    # The same front, checked before the first change.
    assert front_check["vars"] == front["vars"] and front_check["when"] == front["when"]


def test_socket_units_name_the_owner_of_a_socket_systemd_holds(listeners_module: ModuleType) -> None:
    listing = (
        "0.0.0.0:80 gunicorn@web.socket gunicorn@web.service\n"
        "[::]:8080 gunicorn@api.socket gunicorn@api.service\n"
        "/run/dbus/system_bus_socket dbus.socket dbus.service\n"
    )
    assert listeners_module.socket_units(listing) == {80: {"gunicorn@web.socket"}, 8080: {"gunicorn@api.socket"}}


@pytest.mark.parametrize(
    ("units", "errors"),
    [
        (["gunicorn@web.socket", "gunicorn@web.service"], 0),
        (["gunicorn@other.socket"], 1),
        (["init.scope"], 1),
    ],
)
def test_an_apps_own_socket_does_not_hold_its_port(filters: ModuleType, units: list[str], errors: int) -> None:
    listeners = [{"port": 80, "units": units}]
    assert len(filters.app_input_errors([app(name="web")], "/srv", {}, listeners, "/")) == errors


def _link(name: str, target: str | None) -> dict[str, object]:
    stat = {"exists": target is not None, **({"lnk_target": target} if target else {})}
    return {"item": {"name": name}, "stat": stat}


@pytest.mark.parametrize(
    ("apps_root", "part", "path"),
    [
        ("/srv", "home", "/srv/web"),
        ("/srv", "link", "/srv/web/app"),
        ("/srv", "releases", "/srv/web/releases"),
        ("/srv", "repo", "/srv/web/repo"),
        ("/opt/apps/", "venv", "/opt/apps/web/venv"),
        ("/opt/apps", "python", "/opt/apps/web/venv/bin/python"),
        ("/opt/apps", "venvs", "/opt/apps/web/venvs"),
        ("/srv", "previous", "/srv/web/previous"),
    ],
)
def test_every_app_carries_its_directories(filters: ModuleType, apps_root: str, part: str, path: str) -> None:
    (web,) = filters.app_normalize([app()], "/", apps_root)
    assert web["dirs"][part] == path


def test_local_releases_name_their_directory_on_the_host(filters: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("app = 1")
    apps = filters.app_normalize([{"name": "web", "path": str(tmp_path)}, {"name": "api", "repo": "x"}], "/", "/opt")
    listed = filters.app_local_files(apps, [])
    (target,) = listed["targets"]
    assert target == {
        "name": "web",
        "release": target["release"],
        "dir": f"/opt/web/releases/{target['release']}",
        "requirements": "",
    }


@pytest.mark.parametrize(
    ("apps_root", "release", "path"),
    [
        ("/srv", "local-abc", "/srv/web/releases/local-abc"),
        ("/opt/apps", "git-0123456789ab", "/opt/apps/web/releases/git-0123456789ab"),
        ("/srv", "unversioned", "/srv/web/releases/unversioned"),
    ],
)
def test_a_release_lives_in_releases(filters: ModuleType, apps_root: str, release: str, path: str) -> None:
    (web,) = filters.app_normalize([app()], "/", apps_root)
    assert filters.app_release_path(web, release) == path


def test_the_link_resolves_to_the_release_directory(filters: ModuleType) -> None:
    (web,) = filters.app_normalize([app()], "/", "/srv")
    target = filters.app_link_target("local-abc")
    assert posixpath.normpath(posixpath.join(web["dirs"]["home"], target)) == filters.app_release_path(web, "local-abc")


def test_only_apps_whose_link_moves_are_checked(filters: ModuleType) -> None:
    links = [_link("same", "releases/local-a"), _link("new", "releases/local-a"), _link("first", None)]
    releases = {"same": "local-a", "new": "local-b", "first": "local-c"}
    assert [app["name"] for app in filters.app_moving(links, releases)] == ["new", "first"]


@pytest.mark.parametrize(
    ("keep", "stale"),
    [
        (3, ["/srv/web/releases/r1"]),
        (2, ["/srv/web/releases/r1", "/srv/web/releases/r2"]),
        (1, ["/srv/web/releases/r1", "/srv/web/releases/r2", "/srv/web/releases/r4"]),
    ],
)
def test_stale_releases_keep_the_newest_and_never_the_serving_one(
    filters: ModuleType, keep: int, stale: list[str]
) -> None:
    found = [{"path": f"/srv/web/releases/r{n}", "mtime": n} for n in (1, 2, 3, 4)]
    # r3 serves (a rollback to an older release): it is kept and counts towards `keep`.
    result = filters.app_stale_releases([{"item": {"name": "web"}, "files": found}], {"web": "r3"}, keep)
    assert result == stale


def test_a_secret_value_is_never_repeated_in_an_error(filters: ModuleType) -> None:
    errors = filters.app_input_errors([app(secret_env={"WORKERS_PER_CORE": "hunter2-secret"})], "/srv", {}, [], "/")
    assert errors == [
        "app_list[0] (web).secret_env.WORKERS_PER_CORE (value hidden) is invalid: "
        "expected a number greater than 0, at most 64"
    ]


NO_STACK_CHANGE = {"resocket_all": False, "restart_all": False, "reload_all": False}


@pytest.mark.parametrize(
    ("changed", "stack", "expected"),
    [
        ({}, NO_STACK_CHANGE, []),
        ({"code": ["a"]}, NO_STACK_CHANGE, [("gunicorn@a.service", "reloaded")]),
        ({"code": ["a"], "env": ["a"]}, NO_STACK_CHANGE, [("gunicorn@a.service", "restarted")]),
        (
            {"env": ["b"], "socket": ["b"], "code": ["b"]},
            NO_STACK_CHANGE,
            [("gunicorn@b.socket", "stopped"), ("gunicorn@b.service", "started")],
        ),
        ({"code": ["a"], "started": ["a"]}, NO_STACK_CHANGE, []),  # a first start runs the new code already
        (
            {"env": ["a"]},
            {**NO_STACK_CHANGE, "reload_all": True},
            [("gunicorn@a.service", "restarted"), ("gunicorn@b.service", "reloaded")],
        ),
        (
            {"started": ["b"]},
            {**NO_STACK_CHANGE, "resocket_all": True},
            [("gunicorn@a.socket", "stopped"), ("gunicorn@a.service", "started")],
        ),
    ],
)
def test_one_plan_per_app_the_strongest_action(
    filters: ModuleType, changed: dict[str, list[str]], stack: dict[str, bool], expected: list[tuple[str, str]]
) -> None:
    plan = filters.app_plan([{"name": "a"}, {"name": "b"}], changed, stack)
    assert [(step["unit"], step["state"]) for step in plan] == expected


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        ({"venv": ["a"], "code": ["a"]}, [("gunicorn@a.service", "restarted", "restart")]),  # new packages: restart
        ({"pending_reload": ["a"]}, [("gunicorn@a.service", "reloaded", "reload")]),
        ({"pending_restart": ["a"], "code": ["a"]}, [("gunicorn@a.service", "restarted", "restart")]),
        (
            {"pending_socket": ["b"]},
            [("gunicorn@b.socket", "stopped", "socket"), ("gunicorn@b.service", "started", "socket")],
        ),
        ({"pending_restart": ["a"], "started": ["a"]}, []),  # started in this run: nothing left to do
        # A master that preloaded the app would fork the code it imported: its reloads are restarts.
        ({"code": ["a"], "preloaded": ["a"]}, [("gunicorn@a.service", "restarted", "restart")]),
        ({"pending_reload": ["a"], "preloaded": ["a"]}, [("gunicorn@a.service", "restarted", "restart")]),
        (
            {"code": ["a", "b"], "preloaded": ["b"]},
            [("gunicorn@a.service", "reloaded", "reload"), ("gunicorn@b.service", "restarted", "restart")],
        ),
        ({"preloaded": ["a"]}, []),  # nothing changed: nothing to do
        ({"code": ["a"], "started": ["a"], "preloaded": ["a"]}, []),
    ],
)
def test_a_new_venv_restarts_and_a_stopped_run_s_records_are_applied(
    filters: ModuleType, changed: dict[str, list[str]], expected: list[tuple[str, str, str]]
) -> None:
    plan = filters.app_plan([{"name": "a"}, {"name": "b"}], changed, NO_STACK_CHANGE)
    assert [(step["unit"], step["state"], step["kind"]) for step in plan] == expected


def test_the_preloaded_apps_are_read_from_the_running_masters(filters: ModuleType) -> None:
    before = {"a": {"preloaded": True}, "b": {"preloaded": False}, "c": {}}
    assert filters.app_preloaded(before) == ["a"]


def units(socket: bool, service: bool) -> dict[str, dict[str, dict[str, bool]]]:
    """app_host_facts' units of one app, as read before the run changed anything."""
    return {
        "units": {"socket": {"active": socket, "enabled": socket}, "service": {"active": service, "enabled": False}}
    }


@pytest.mark.parametrize(
    ("before", "first"),
    [
        ({}, ["a", "b"]),  # a fresh host: nothing of either app exists yet
        (
            {"a": units(False, False), "b": units(True, False)},
            ["a"],
        ),  # b's socket listened: a connection could start it
        ({"a": units(True, True), "b": units(True, True)}, []),
        ({"a": units(False, True)}, ["b"]),  # a service up without its socket is going down, not new
    ],
)
def test_a_first_start_is_read_from_the_units_before_the_run(
    filters: ModuleType, before: dict[str, object], first: list[str]
) -> None:
    """Not from the start task's result: a balancer's health check may start the instance through its new socket
    first, and that instance already runs everything new (a fleet converge once restarted such a socket and failed)."""
    assert filters.app_first_starts([{"name": "a"}, {"name": "b"}], before) == first


@pytest.mark.parametrize(
    ("changed", "before", "resets"),
    [
        ({"code": ["a"]}, {}, []),  # a reload starts nothing: no counter to clear
        ({"env": ["a"]}, {}, ["gunicorn@a.service"]),
        ({"socket": ["b"]}, {}, ["gunicorn@b.service", "gunicorn@b.socket"]),
        ({}, {"b": {"units": {"service": {"failed": True}, "socket": {"failed": False}}}}, ["gunicorn@b.service"]),
        ({}, {"gone": {"units": {"service": {"failed": True}}}}, []),  # not an app of this run
    ],
)
def test_the_units_a_run_restarts_start_from_a_clear_start_limit(
    filters: ModuleType, changed: dict[str, list[str]], before: dict[str, object], resets: list[str]
) -> None:
    apps = [{"name": "a"}, {"name": "b"}]
    plan = filters.app_plan(apps, changed, NO_STACK_CHANGE)
    assert filters.app_start_limit_resets(plan, apps, before) == resets


def test_pending_records_round_trip_through_their_file_names(filters: ModuleType) -> None:
    """What switch.yml writes before a change is what app_host_facts reads back in the next run."""
    (web,) = filters.app_normalize([app()], "/", "/srv")
    path = filters.app_pending_path(web, "restart")
    assert path == "/srv/web/.wsgiops-pending-restart"
    found = [{"item": web, "files": [{"path": path}, {"path": "/srv/web/app/.wsgiops-env"}]}]
    assert filters.app_pending(found) == {"pending_socket": [], "pending_restart": ["web"], "pending_reload": []}
    assert filters.app_pending_found(found) == [path]
    assert path in filters.app_pending_paths([web])


@pytest.mark.parametrize(
    ("parts", "same"),
    [
        (["/usr/bin/python3", "stack1", "req1", "", "{}"], True),
        (["/usr/bin/python3", "stack2", "req1", "", "{}"], False),  # a new server stack
        (["/usr/bin/python3", "stack1", "req2", "", "{}"], False),  # new requirements
        (["/usr/bin/python3", "stack1", "", "", "{}"], False),  # no requirements.txt
        (["/usr/bin/python3", "stack1", "req1", "", '{"PIP_INDEX_URL": "https://x"}'], False),  # another index
        (["/usr/bin/python3.12", "stack1", "req1", "", "{}"], False),  # another interpreter
    ],
)
def test_a_venv_is_named_by_everything_pip_is_given(filters: ModuleType, parts: list[str], same: bool) -> None:
    reference = filters.app_venv_key(["/usr/bin/python3", "stack1", "req1", "", "{}"])
    key = filters.app_venv_key(parts)
    assert (key == reference) is same
    assert len(key) == filters.VENV_KEY_LENGTH and key.isalnum()


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ("venvs/0123456789abcdef", "0123456789abcdef"),
        ("../../venvs/unversioned", "unversioned"),
        ("releases/local-1", None),
        ("/etc", None),
        ("", None),
        (None, None),
    ],
)
def test_a_venv_link_names_a_venv_of_ours_or_none(filters: ModuleType, target: str | None, key: str | None) -> None:
    (web,) = filters.app_normalize([app()], "/", "/srv")
    venv = filters.app_venv_from_link(web, target)
    assert (venv and venv["key"]) == key or (venv is None and key is None)
    if venv:
        assert venv["path"] == f"/srv/web/venvs/{key}"
        assert venv["python"] == f"/srv/web/venvs/{key}/bin/python"


def test_which_apps_move_to_another_venv(filters: ModuleType) -> None:
    a, b, c = filters.app_normalize([app(name="a"), app(name="b"), app(name="c")], "/", "/srv")
    venvs = {name: filters.app_venv(item, "k1") for name, item in (("a", a), ("b", b), ("c", c))}
    links = [
        {"item": a, "stat": {"exists": True, "lnk_target": "venvs/k1"}},  # already there
        {"item": b, "stat": {"exists": True, "lnk_target": "venvs/k0"}},  # another set
        {"item": c, "stat": {"exists": True, "isdir": True}},  # a 1.0.0 venv directory
    ]
    assert filters.app_venv_moving(links, venvs) == ["b", "c"]


def test_pruning_keeps_the_venvs_kept_releases_record_and_the_serving_one(filters: ModuleType) -> None:
    (web,) = filters.app_normalize([app()], "/", "/srv")
    listing = [
        {
            "item": web,
            "stdout": "venv k1\nvenv k2\nvenv k3\nvenv half\nrecord ../../venvs/k2\nrecord ../../venvs/k2\n",
        }
    ]
    serving = {"web": filters.app_venv(web, "k3")}
    assert filters.app_unused_venvs(listing, serving) == ["/srv/web/venvs/half", "/srv/web/venvs/k1"]


def test_a_serving_release_without_records_is_recorded_before_a_change(filters: ModuleType) -> None:
    a, b = filters.app_normalize([app(name="a"), app(name="b")], "/", "/srv")
    links = [
        {"item": a, "stat": {"exists": True, "lnk_target": "releases/local-1"}},
        {"item": b, "stat": {"exists": False}},  # a first deploy: nothing serves
    ]
    found = [
        {"item": a, "files": [{"path": "/srv/a/app/.wsgiops-env"}]},
        {"item": b, "files": []},
    ]
    (unrecorded,) = filters.app_serving_unrecorded(found, links)
    assert unrecorded["release"] == "local-1"
    assert unrecorded["missing"] == ["venv", "listen"]
    assert unrecorded["paths"]["venv"] == "/srv/a/releases/local-1/.wsgiops-venv"


@pytest.mark.parametrize(
    ("accounts", "groups", "homes", "expected"),
    [
        ({}, {"docker": ["x", "998", ""]}, {}, "collides with the existing group 'docker'"),
        ({"docker": ["x", "998", "998", "", "/var/lib/docker", "/bin/false"]}, {}, {}, "existing account 'docker'"),
        ({}, {}, {"docker": False}, "/srv/docker exists and is not an app directory this suite made"),
        ({}, {}, {"docker": True}, None),  # the suite's marker: its own directory (a first deploy stopped early)
        (
            {"docker": ["x", "998", "998", "", "/srv/docker", "/usr/sbin/nologin"]},
            {"docker": ["x", "998", ""]},
            {},
            None,
        ),
    ],
    ids=["group", "account", "foreign-dir", "marked-dir", "ours"],
)
@pytest.mark.parametrize("state", ["present", "absent"])
def test_an_app_name_cannot_take_over_what_exists(
    filters: ModuleType, accounts: dict, groups: dict, homes: dict, expected: str | None, state: str
) -> None:
    errors = filters.app_input_errors(
        [{"name": "docker", "path": EXAMPLE, "state": state}],
        "/srv",
        accounts,
        [],
        "/",
        groups,
        list(homes),
        [name for name, has_marker in homes.items() if has_marker],
    )
    assert errors == ([] if expected is None else [errors[0]])
    if expected:
        assert expected in errors[0]


def test_normalised_apps_carry_no_secret_value(filters: ModuleType) -> None:
    """The normalised dicts are loop items and facts, which Ansible prints; the values stay in app_list only."""
    apps = [app(secret_env={"API_TOKEN": "s3cret-x", "DB": 5})]
    (web,) = filters.app_normalize(apps, "/", "/srv")
    assert "s3cret-x" not in repr(web)
    assert web["secret_keys"] == ["API_TOKEN", "DB"]
    other = filters.app_normalize([app(secret_env={"API_TOKEN": "other"})], "/", "/srv")[0]
    assert web["secret_digest"] != other["secret_digest"]  # a changed secret is a changed app
    assert filters.app_secret_env(apps, "web") == {"API_TOKEN": "s3cret-x", "DB": "5"}


def test_what_the_role_shows_on_a_failure_has_the_secrets_masked(filters: ModuleType) -> None:
    apps = [app(secret_env={"API_TOKEN": "s3cret-x", "SHORT": "s3"})]
    assert filters.app_redact("boom: token s3cret-x and s3", apps) == "boom: token *** and ***"
