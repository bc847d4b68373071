from pathlib import Path

import yaml

from lab import inventory

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
