import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab import dists, inventory, wheel

KEY = Path("/lab/id_ed25519")


def test_render_is_the_yaml_ansible_reads() -> None:
    hosts = [inventory.Host("b", 2302, 2303, "debian13", 1), inventory.Host("a", 2300, 2301, "debian12", 2)]
    data = yaml.safe_load(inventory.render(hosts, KEY))
    lab = data["all"]["children"]["lab"]["hosts"]
    assert list(lab) == ["a", "b"]
    assert lab["a"] == {
        "ansible_host": "127.0.0.1",
        "ansible_port": 2300,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": "/lab/id_ed25519",
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
        "-o IdentitiesOnly=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=6",
        "ansible_host_key_checking": False,
        "ansible_ssh_timeout": 60,
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_dist": "debian12",
        "lab_cpus": 2,
        "lab_http_port": 2301,
        "lab_url": "http://127.0.0.1:2301/",
    }


def test_render_without_hosts_is_still_valid() -> None:
    data = yaml.safe_load(inventory.render([], KEY))
    assert data["all"]["children"]["lab"]["hosts"] == {}


def test_static_demo_inventory_matches_the_demo_ports() -> None:
    repo = Path(__file__).resolve().parents[2]
    demo = yaml.safe_load((repo / "inventory/lab/hosts.yml").read_text())["all"]["children"]["lab"]
    assert demo["hosts"]["demo"]["ansible_port"] == 2222
    assert demo["hosts"]["demo"]["lab_http_port"] == 8080
    assert demo["vars"]["ansible_ssh_private_key_file"].endswith("/.cache/lab/id_ed25519")


@pytest.mark.parametrize("built", [True, False], ids=["wheel-built", "nothing-built"])
def test_a_plain_site_run_finds_the_demo_wheel(tmp_path: Path, built: bool) -> None:
    """`ansible-playbook playbooks/site.yml` with no extra vars hands the demo VM the wheel `make demo` built (the link
    lab.wheel keeps current), so a rerun after the demo changes nothing; with none built, the role's builder."""
    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "inventory" / "lab", tmp_path / "inventory" / "lab")
    expected = str(tmp_path / "meinheld_build")
    if built:
        current = wheel.current_link(dists.get("debian12"), tmp_path / ".cache" / "meinheld")
        target = current.with_name("debian12-1.0.2+patched.gabc")
        target.mkdir(parents=True)
        whl = target / "meinheld-1.0.2+patched.gabc-cp311-cp311-linux_x86_64.whl"
        whl.touch()
        wheel.point_current(current, target)
        expected = str(current / whl.name)
    inventory_file = str(tmp_path / "inventory/lab/hosts.yml")
    debug = ["-m", "ansible.builtin.debug", "-a", "var=server_meinheld_source"]
    out = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "demo", "-i", inventory_file, "-c", "local", *debug],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_CONFIG": str(repo / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"},
    ).stdout
    value = out.split("server_meinheld_source:", 1)[1].strip()
    assert os.path.normpath(value) == expected
