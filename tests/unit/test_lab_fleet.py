"""The lab fleet's pure parts (wiring, overlay, inventory) and the fleet report's batch timing and scale table."""

from __future__ import annotations

from pathlib import Path

import yaml

from lab import fleet
from lab.container import CONTAINER_CUSTOMIZE
from tests.conftest import REPO
from tests.fleet import harness


def test_the_static_inventory_matches_the_lab_fleet() -> None:
    inventory = yaml.safe_load((REPO / "inventory" / "fleet-lab" / "hosts.yml").read_text())
    groups = inventory["all"]["children"]
    for member in fleet.MEMBERS:
        host = groups[member.group]["hosts"][member.name]
        assert host["ansible_port"] == member.ssh_port
        assert host["lab_url"] == f"http://127.0.0.1:{member.http_port}/"
        if member.group == "web":
            assert host["balancer_backend_address"] == member.address
    assert groups["lb"]["hosts"]["lb1"]["lab_url"] == fleet.LB_URL


def test_the_web_hosts_believe_forwarding_headers_from_the_balancer_alone() -> None:
    web = yaml.safe_load((REPO / "inventory" / "fleet-lab" / "group_vars" / "web.yml").read_text())
    (balancer,) = [m for m in fleet.MEMBERS if m.group == "lb"]
    assert [app["env"]["FORWARDED_ALLOW_IPS"] for app in web["app_list"]] == [balancer.address]


def test_the_balancer_asks_the_lab_s_acme_server_for_the_name_the_tests_connect_to() -> None:
    lb = yaml.safe_load((REPO / "inventory" / "fleet-lab" / "group_vars" / "lb.yml").read_text())
    assert lb["balancer_acme_domains"] == [fleet.ACME_NAME]
    assert f"https://{fleet.ACME_NAME}:{fleet.LB_HTTPS_PORT}/" == fleet.LB_HTTPS_URL
    (balancer,) = [m for m in fleet.MEMBERS if m.group == "lb"]
    assert balancer.https_port == fleet.LB_HTTPS_PORT
    assert {m.https_port for m in fleet.MEMBERS if m.group == "web"} == {0}


def test_the_lab_s_prometheus_is_forwarded_where_the_inventory_make_and_the_tests_say() -> None:
    inventory = yaml.safe_load((REPO / "inventory" / "fleet-lab" / "hosts.yml").read_text())
    assert inventory["all"]["children"]["lb"]["hosts"]["lb1"]["lab_prometheus_url"] == fleet.PROMETHEUS_URL
    assert f"http://127.0.0.1:{fleet.PROMETHEUS_PORT}/" == fleet.PROMETHEUS_URL
    (balancer,) = [m for m in fleet.MEMBERS if m.group == "lb"]
    assert balancer.prometheus_port == fleet.PROMETHEUS_PORT
    assert {m.prometheus_port for m in fleet.MEMBERS if m.group == "web"} == {0}
    ports = [p for m in fleet.MEMBERS for p in (m.ssh_port, m.http_port, m.https_port, m.prometheus_port) if p]
    assert len(ports) == len(set(ports))
    assert f"FLEET_PROMETHEUS_URL := {fleet.PROMETHEUS_URL}\n" in (REPO / "mk" / "fleet.mk").read_text()
    assert harness.PROMETHEUS_URL == fleet.PROMETHEUS_URL


def test_the_lab_s_prometheus_scrapes_as_often_as_the_fleet_tests_wait_and_where_the_apps_serve() -> None:
    template = (REPO / "lab" / "playbooks" / "templates" / "prometheus.yml.j2").read_text()
    assert f"  scrape_interval: {harness.SCRAPE_SECONDS:g}s\n" in template
    playbook = yaml.safe_load((REPO / "lab" / "playbooks" / "prometheus.yml").read_text())
    assert playbook[1]["vars"]["lab_prometheus_port"] == fleet.PROMETHEUS_PORT
    web = yaml.safe_load((REPO / "inventory" / "fleet-lab" / "group_vars" / "web.yml").read_text())
    assert [app["env"]["METRICS_BIND"] for app in web["app_list"]] == ["{{ balancer_backend_address }}:9101"]


def test_every_fleet_address_is_inside_the_guarded_range() -> None:
    assert all(m.address.startswith(fleet.SUBNET + ".") for m in fleet.MEMBERS)
    assert fleet.GUARD.startswith(fleet.SUBNET.rsplit(".", 1)[0])
    assert len({m.address for m in fleet.MEMBERS}) == len(fleet.MEMBERS)
    assert all(len(m.veth) <= 15 for m in fleet.MEMBERS)


def test_the_guard_route_is_in_place_before_the_address() -> None:
    commands = [" ".join(c) for c in fleet.wiring_commands(fleet.MEMBERS[1], 4242)]
    guard = next(i for i, c in enumerate(commands) if "unreachable" in c)
    address = next(i for i, c in enumerate(commands) if " addr add " in c)
    assert guard < address
    assert commands[0].startswith(f"ip -n {fleet.NETNS} link add v-web1 type veth peer name fleet0 netns 4242")


def test_the_overlay_keeps_the_shared_tree_read_only(tmp_path: Path) -> None:
    command = fleet.overlay_nspawn_command(Path("/tree"), tmp_path, "fleet-web1")
    inner = command[-1]
    assert f"lowerdir=/tree,upperdir={tmp_path}/upper,workdir={tmp_path}/work {tmp_path}/rootfs" in inner
    assert command[:4] == ["unshare", "-m", "--propagation", "private"]
    assert "--private-network" in inner


def test_each_member_keeps_its_guard_route_and_does_not_wait_for_networkd() -> None:
    files = fleet.overlay_files(fleet.MEMBERS[2])
    assert "ManageForeignRoutes=no" in files[fleet.NETWORKD_DROPIN]
    assert files[Path("etc/hostname")] == "web2\n"
    # Every lab container, a fleet member too: network-online.target must not wait for links networkd does not manage.
    assert 'ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"' in CONTAINER_CUSTOMIZE


def test_batch_times_are_the_gaps_between_the_rolling_play_headers() -> None:
    lines = [
        (0.0, "PLAY [Put HAProxy in front of the web hosts] ***"),
        (5.0, "PLAY [Deploy the apps, batch by batch] ***"),
        (20.5, "PLAY [Deploy the apps, batch by batch] ***"),
        (31.0, "PLAY [Deploy the apps, batch by batch] ***"),
        (40.0, "PLAY RECAP ***"),
    ]
    assert harness.batch_times(lines) == [15.5, 10.5, 9.0]


def test_the_scale_table_multiplies_batches_and_waves() -> None:
    table = harness.scale_table(30.0, forks=25)
    assert table[2].split("|")[0].strip() == "10"
    # 10 hosts: 10 batches of 1 (5 min), 10 batches of 1 at 10%, 5 batches of 2 at 25% (int(10/4) = 2).
    assert [c.strip() for c in table[2].split("|")[1:]] == ["5 min", "5 min", "2 min"]
    # 1000 hosts at 25%: 4 batches of 250 hosts, each 10 waves of 25 forks: 40 x 30 s = 20 min.
    assert table[4].split("|")[3].strip() == "20 min"
