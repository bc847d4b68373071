"""bench/stacks.py: how each stack is started, so the comparison's fairness rules are checked, not just written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import paths, stacks


@pytest.fixture
def ctx(tmp_path: Path) -> stacks.Context:
    pythons = {name: tmp_path / name / "bin" / "python" for name in ("suite", "stock", "peers")}
    return stacks.Context(8123, tmp_path, pythons)


def launch(key: str, ctx: stacks.Context) -> stacks.Launch:
    return stacks.by_key([key])[0].build(ctx)


def test_the_suite_runs_through_the_launcher_with_one_worker(ctx: stacks.Context) -> None:
    (proc,) = launch("suite", ctx).procs
    assert proc.argv == (str(ctx.pythons["suite"]), str(paths.START_PY))
    assert proc.env["APP_DIR"] == str(paths.EXAMPLE_APP)
    assert (proc.env["HOST"], proc.env["PORT"], proc.env["WEB_CONCURRENCY"]) == ("127.0.0.1", "8123", "1")
    assert proc.env["ACCESS_LOG"] == "off"
    assert "WORKER_CLASS" not in proc.env  # the launcher's default: Meinheld


def test_stock_differs_from_the_suite_only_by_its_venv(ctx: stacks.Context) -> None:
    (suite,), (stock,) = launch("suite", ctx).procs, launch("stock-meinheld", ctx).procs
    assert stock.argv[0] == str(ctx.pythons["stock"])
    assert stock.argv[1:] == suite.argv[1:] and stock.env == suite.env


def test_suite_as_deployed_leaves_logging_to_the_runtime_defaults(ctx: stacks.Context) -> None:
    (suite,), (deployed,) = launch("suite", ctx).procs, launch("suite-defaults", ctx).procs
    assert "ACCESS_LOG" not in deployed.env and "LOG_LEVEL" not in deployed.env  # gunicorn_conf.py: "-" and info
    assert {k: v for k, v in suite.env.items() if k not in ("ACCESS_LOG", "LOG_LEVEL")} == deployed.env
    assert deployed.argv == suite.argv


@pytest.mark.parametrize(("key", "worker_class"), [("gunicorn-sync", "sync"), ("gunicorn-gthread", "gthread")])
def test_gunicorn_peers_use_the_same_launcher(ctx: stacks.Context, key: str, worker_class: str) -> None:
    (proc,) = launch(key, ctx).procs
    assert proc.env["WORKER_CLASS"] == worker_class
    assert proc.argv[1] == str(paths.START_PY)


def test_scaling_drops_the_fixed_worker_count(tmp_path: Path) -> None:
    pythons = {"suite": tmp_path / "python"}
    ctx = stacks.Context(1, tmp_path, pythons, stacks.scaling_env(4))
    (proc,) = stacks.by_key(["suite"])[0].build(ctx).procs
    assert "WEB_CONCURRENCY" not in proc.env
    assert proc.env["WORKERS_PER_CORE"] == "4"


def test_uwsgi_nginx_is_the_fair_baseline(ctx: stacks.Context) -> None:
    started = launch("uwsgi-nginx", ctx)
    assert [p.name for p in started.procs] == ["uwsgi", "nginx"]
    ini = started.files[ctx.rundir / "uwsgi.ini"]
    for line in ("processes = 1", "listen = 1024", "disable-logging = true", f"socket = {ctx.rundir / 'uwsgi.sock'}"):
        assert line in ini
    conf = started.files[ctx.rundir / "nginx.conf"]
    assert "worker_processes 1;" in conf and "access_log off;" in conf
    assert f"uwsgi_pass unix:{ctx.rundir / 'uwsgi.sock'};" in conf
    assert started.ready_files == (ctx.rundir / "uwsgi.sock",)


@pytest.mark.parametrize("key", [s.key for s in stacks.PER_CORE])
def test_every_stack_listens_on_loopback_only(ctx: stacks.Context, key: str) -> None:
    started = launch(key, ctx)
    assert started.url.startswith("http://127.0.0.1:8123/")
    for path, content in started.files.items():
        if path.name == "nginx.conf":
            assert re.findall(r"^\s*listen (\S+)", content, re.MULTILINE) == ["127.0.0.1:8123"]
    for proc in started.procs:
        if "HOST" in proc.env:
            assert proc.env["HOST"] == "127.0.0.1"
        if "--host" in proc.argv:
            assert proc.argv[proc.argv.index("--host") + 1] == "127.0.0.1"
        if proc.name == "bjoern":
            assert "'127.0.0.1', 8123" in proc.argv[-1]


def test_nginx_static_serves_the_same_bytes(ctx: stacks.Context) -> None:
    started = launch("nginx-static", ctx)
    assert started.files[ctx.rundir / "static" / "hello.txt"] == "Hello World from Flask"
    assert started.url.endswith("/hello.txt")


def test_bare_app_answers_like_flask() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bare", paths.BARE_APP / "main.py")
    assert spec and spec.loader
    bare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bare)
    seen = []
    body = b"".join(bare.app({}, lambda status, headers: seen.append((status, headers))))
    assert body == stacks.HELLO
    assert seen[0][0] == "200 OK" and ("Content-Length", "22") in seen[0][1]


def test_by_key_keeps_table_order_and_rejects_unknown_names() -> None:
    assert [s.key for s in stacks.by_key(["bjoern", "suite"])] == ["suite", "bjoern"]
    assert stacks.by_key(None) == stacks.PER_CORE
    with pytest.raises(ValueError, match="nope"):
        stacks.by_key(["nope"])


def test_there_is_exactly_one_baseline_and_it_is_uwsgi() -> None:
    assert [s.key for s in stacks.PER_CORE if s.kind == "baseline"] == [stacks.BASELINE]


def test_the_baseline_stack_is_the_suite_on_its_own_venv(tmp_path: Path) -> None:
    pythons = {name: tmp_path / name / "bin" / "python" for name in ("suite", stacks.SUITE_BASELINE)}
    ctx = stacks.Context(8123, tmp_path, pythons)
    baseline = stacks.baseline_stack("0017-hold-at-most-16-requests-per-batch.patch")
    assert (baseline.key, baseline.label) == ("suite-baseline", "suite, Meinheld patches up to 0017")
    (suite,), (before,) = launch("suite", ctx).procs, baseline.build(ctx).procs
    assert before.argv == (str(pythons[stacks.SUITE_BASELINE]), str(paths.START_PY))
    assert before.argv[1:] == suite.argv[1:] and before.env == suite.env and before.cwd == suite.cwd


@pytest.mark.parametrize(
    ("keys", "chosen"),
    [
        (None, None),  # everything, the baseline right after the suite
        (["bjoern", "suite-baseline", "suite"], ["suite", "suite-baseline", "bjoern"]),
        (["suite", "bjoern"], ["suite", "suite-baseline", "bjoern"]),  # --baseline always adds its stack
    ],
)
def test_by_key_places_the_baseline_after_the_suite(keys: list[str] | None, chosen: list[str] | None) -> None:
    extra = (stacks.baseline_stack("0017-x.patch"),)
    found = [s.key for s in stacks.by_key(keys, extra)]
    if chosen is None:
        everything = [s.key for s in stacks.PER_CORE]
        chosen = [everything[0], "suite-baseline", *everything[1:]]
    assert found == chosen


def test_the_baseline_stack_needs_the_option() -> None:
    with pytest.raises(ValueError, match=r"suite-baseline \(suite-baseline needs --baseline PATCH\)"):
        stacks.by_key(["suite", "suite-baseline"])


def test_suite_via_front_is_the_suite_behind_the_roles_haproxy(ctx: stacks.Context) -> None:
    """The same suite process on a port of its own, then HAProxy on the stack's port with the role's configuration."""
    (suite,) = launch("suite", ctx).procs
    front = launch(stacks.SUITE_FRONT, ctx)
    app, haproxy = front.procs
    assert app.argv == suite.argv
    backend = app.env["PORT"]
    assert backend != "8123" and app.env["FORWARDED_ALLOW_IPS"] == "127.0.0.1"
    assert {k: v for k, v in app.env.items() if k not in ("PORT", "FORWARDED_ALLOW_IPS")} == {
        k: v for k, v in suite.env.items() if k != "PORT"
    }
    assert haproxy.argv[:2] == ("haproxy", "-db") and haproxy.workers == "none"
    config = front.files[ctx.rundir / "haproxy.cfg"]
    assert "    bind 127.0.0.1:8123\n" in config and f"    server example 127.0.0.1:{backend}\n" in config
    assert "roles/balancer, entry point `front`" in config  # rendered from the role's own template
    assert front.url == "http://127.0.0.1:8123/"


@pytest.mark.parametrize(
    ("key", "added"),
    [
        (stacks.SUITE_METRICS, {"METRICS_BIND"}),
        (stacks.SUITE_JSON_LOG, {"ACCESS_LOG_FORMAT"}),
    ],
)
def test_the_observability_rows_differ_from_the_suite_by_their_switch_only(
    ctx: stacks.Context, key: str, added: set[str]
) -> None:
    (suite,), (row,) = launch("suite", ctx).procs, launch(key, ctx).procs
    assert row.argv == suite.argv
    changed = {name for name in row.env.keys() | suite.env.keys() if row.env.get(name) != suite.env.get(name)}
    assert changed == added | ({"ACCESS_LOG"} if key == stacks.SUITE_JSON_LOG else set())
    if key == stacks.SUITE_METRICS:
        host, port = row.env["METRICS_BIND"].split(":")
        assert host == "127.0.0.1" and port != "8123"
    else:
        assert (row.env["ACCESS_LOG"], row.env["ACCESS_LOG_FORMAT"]) == ("-", "json")
