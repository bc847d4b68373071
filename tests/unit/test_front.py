"""The front option: an app behind HAProxy on its own host, through the one resolver of binds and the one template.

The app role's filters move an app with `front: true` to loopback (gunicorn_conf.resolve_bind reads the result, as
for every app) and refuse what the front cannot take over; the balancer role renders its own haproxy.cfg.j2 for the
front, with its one server on loopback, and the benchmark's "suite via front" renders the same file the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import front as bench_front
from tests.conftest import REPO, load_app_filters
from tests.unit.test_server_assert import assert_play, run_play

filters = load_app_filters()
HAPROXY = shutil.which("haproxy")


def app(**fields: object) -> dict[str, object]:
    return {"name": "shop", "path": "/", "front": True, **fields}


def errors(*apps: dict[str, object], listeners: list[dict[str, object]] | None = None) -> list[str]:
    return filters.app_input_errors(list(apps), "/srv", {}, listeners or [], "/")


def test_the_front_takes_the_apps_address_and_the_app_moves_to_loopback() -> None:
    (normal,) = filters.app_normalize([app()], "/", "/srv")
    assert normal["front"] == {
        "name": "shop",
        "host": "0.0.0.0",
        "port": 80,
        "bind": "0.0.0.0:80",
        "backend": "127.0.0.1:8000",  # gunicorn_conf's port for a BIND without one
        "backend_port": 8000,
        "trusted": "127.0.0.1",
    }
    # The env file, the socket and the health check all say loopback; the front is the one trusted peer.
    assert normal["env"] == {"BIND": "127.0.0.1:8000", "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    assert (normal["bind"], normal["listen"], normal["health_url"]) == (
        "127.0.0.1:8000",
        "127.0.0.1:8000",
        "http://127.0.0.1:8000/",
    )


def test_the_apps_own_address_and_front_port_are_read_by_the_runtimes_resolver() -> None:
    (normal,) = filters.app_normalize([app(port=8080, front_port=9000, env={"HOST": "10.0.0.5"})], "/", "/srv")
    assert (normal["front"]["bind"], normal["front"]["backend"]) == ("10.0.0.5:8080", "127.0.0.1:9000")
    assert "HOST" not in normal["env"] and "PORT" not in normal["env"]
    settings = filters.runtime.resolve(filters.app_runtime_env(app(port=8080, front_port=9000)), cores=1)
    assert (settings["bind"], settings["forwarded_allow_ips"]) == ("127.0.0.1:9000", ["127.0.0.1/32"])


def test_without_the_front_nothing_moves() -> None:
    (normal,) = filters.app_normalize([app(front=False)], "/", "/srv")
    assert normal["front"] is None and normal["bind"] == "0.0.0.0:80" and normal["env"] == {}
    assert errors(app(front=False)) == []


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"front": "yes"}, "front='yes' is invalid: expected true or false"),
        ({"front": False, "front_port": 9000}, "front_port=9000 is given but front is not true"),
        ({"front_port": "80x"}, "front_port='80x' is invalid: expected a port number from 1 to 65535"),
        ({"front_port": 70000}, "front_port=70000 is invalid"),
        ({"front_port": 80}, "front_port=80 is invalid: the front itself listens on port 80"),
        ({"port": 8000}, "front_port=8000 is invalid: the front itself listens on port 8000"),
        ({"env": {"BIND": "unix:/run/gunicorn/shop.sock"}}, "is invalid with front: the front listens on TCP"),
        ({"env": {"HOST": "shop.example.com"}}, "HAProxy listens on an IP address only"),
        ({"env": {"FORWARDED_ALLOW_IPS": "10.0.0.1"}}, "env.FORWARDED_ALLOW_IPS is invalid with front"),
        ({"secret_env": {"FORWARDED_ALLOW_IPS": "10.0.0.1"}}, "secret_env.FORWARDED_ALLOW_IPS is invalid with front"),
        ({"env": {"PORT": "http"}}, "PORT='http' is invalid"),
    ],
)
def test_bad_front_input_is_refused_naming_it(fields: dict[str, object], refused: str) -> None:
    found = errors(app(**fields))
    assert len(found) == 1 and refused in found[0], found


def test_one_front_per_host_and_its_ports_belong_to_nobody_else() -> None:
    other = {"name": "blog", "path": "/", "port": 8080}
    assert errors(app(), other) == []
    assert "has the front already" in errors(app(), {**other, "front": True, "front_port": 8001})[0]
    assert "port 8000 is already used by app 'shop'" in errors(app(), {**other, "port": 8000})[0]
    assert "port 80 is already used by app 'shop'" in errors(app(), {**other, "port": 80})[0]


@pytest.mark.parametrize(
    ("units", "refused"),
    [
        (["gunicorn@shop.socket"], None),  # the app itself, before the run that moves it behind the front
        (["haproxy.service"], None),  # the front, after
        (["nginx.service"], "port 80 is held by nginx.service"),
    ],
)
def test_the_fronts_port_may_be_held_by_the_app_or_the_front_only(units: list[str], refused: str | None) -> None:
    found = errors(app(), listeners=[{"port": 80, "units": units}])
    assert found == [] if refused is None else refused in found[0]


def test_an_app_without_front_is_refused_the_port_the_front_holds() -> None:
    found = errors(app(front=False), listeners=[{"port": 80, "units": ["haproxy.service"]}])
    assert found and "port 80 is held by haproxy.service" in found[0]


# --- The balancer role: its input check and its one template, rendered by Ansible --------------------------------

FRONT = {"balancer_front_backend": "127.0.0.1:8000", "balancer_front_name": "shop"}


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        (FRONT, None),
        ({**FRONT, "balancer_front_backend": "[::1]:8000"}, None),
        ({**FRONT, "balancer_front_backend": "10.0.0.5:8000"}, "balancer_front_backend=10.0.0.5:8000 is invalid"),
        ({**FRONT, "balancer_front_backend": "127.0.0.1:0"}, "balancer_front_backend=127.0.0.1:0 is invalid"),
        ({**FRONT, "balancer_front_backend": "127.0.0.1"}, "balancer_front_backend=127.0.0.1 is invalid"),
        ({**FRONT, "balancer_front_name": "a b"}, "balancer_front_name=a b"),
    ],
)
def test_the_front_entry_points_input_is_checked(tmp_path: Path, extra: dict[str, object], refused: str | None) -> None:
    # No backends group on a single host: the front needs none.
    result = run_play(tmp_path, assert_play("balancer"), {"balancer_backends_group": "nosuchgroup", **extra})
    output = result.stdout + result.stderr
    if refused is None:
        assert result.returncode == 0, output[-3000:]
    else:
        assert result.returncode != 0 and refused in output, output[-3000:]


RENDER_PLAY = f"""\
- name: Render the balancer role's HAProxy configuration as the role does
  hosts: localhost
  gather_facts: false
  vars_files:
    - {REPO}/roles/balancer/defaults/main.yml
    - {REPO}/roles/balancer/vars/main.yml
  tasks:
    - name: Render haproxy.cfg.j2
      ansible.builtin.template:
        src: {REPO}/roles/balancer/templates/haproxy.cfg.j2
        dest: "{{{{ out }}}}"
        mode: "0644"
      vars:
        balancer_https: false
"""


def render_by_ansible(tmp_path: Path, extra: dict[str, object]) -> str:
    out = tmp_path / "haproxy.cfg"
    # The template module runs on localhost: under this interpreter, never one a PATH lookup finds.
    result = run_play(tmp_path, RENDER_PLAY, {"out": str(out), "ansible_python_interpreter": sys.executable, **extra})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return out.read_text()


def server_lines(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines() if line.strip().startswith("server ")]


def test_the_front_renders_one_loopback_server_on_the_apps_old_address(tmp_path: Path) -> None:
    config = render_by_ansible(tmp_path, {**FRONT, "balancer_listen_address": "0.0.0.0", "balancer_listen_port": 80})
    assert server_lines(config) == ["server shop 127.0.0.1:8000"]
    assert "    bind 0.0.0.0:80\n" in config
    assert "http-request set-header X-Forwarded-For %[src]" in config


def test_the_balancer_still_renders_its_backends_group(tmp_path: Path) -> None:
    config = render_by_ansible(tmp_path, {"balancer_backends_group": "all", "balancer_backend_port": 8080})
    assert server_lines(config) == ["server localhost localhost:8080"]


def test_the_benchmark_renders_the_same_front(tmp_path: Path) -> None:
    """bench/front.py's rendering is the role's, up to the values the harness must change to run it."""
    harness = {"balancer_listen_address": "127.0.0.1", "balancer_listen_port": 8123, "balancer_stats_port": 0}
    by_ansible = render_by_ansible(tmp_path, {**FRONT, **harness, "balancer_admin_socket": str(tmp_path / "a.sock")})
    by_bench = bench_front.front_config(8123, "127.0.0.1:8000", tmp_path / "a.sock", name="shop")
    assert by_bench.splitlines()[1:] == by_ansible.splitlines()[1:]  # the first line is ansible_managed


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (make test-bench installs it)")
def test_haproxy_accepts_the_front(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(bench_front.front_config(8123, "127.0.0.1:8000", tmp_path / "a.sock"))
    done = subprocess.run([str(HAPROXY), "-c", "-f", str(config)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
