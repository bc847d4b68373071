"""The HAProxy runtime API module's pure parts: parsing HAProxy's answers and deciding what to send and when to stop."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests.conftest import REPO, load_module


@pytest.fixture(scope="module")
def haproxy() -> ModuleType:
    return load_module(REPO / "plugins" / "modules" / "haproxy_server.py")


# `show servers state web` as HAProxy 2.6 answers it (trimmed to the first columns it prints, which is what is parsed).
SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight
3 web 1 web1 10.213.0.11 2 0 1 1
3 web 2 web2 10.213.0.12 2 8 1 1
3 web 3 web3 10.213.0.13 0 1 1 1
"""

STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,status
web_in,FRONTEND,,,3,10,,100,OPEN
web,web1,0,0,2,4,,50,UP
web,web2,0,0,0,3,,40,DRAIN
web,BACKEND,0,0,2,6,,90,UP
"""


def test_servers_state_is_read_by_column_name(haproxy: ModuleType) -> None:
    assert haproxy.parse_servers_state(SERVERS_STATE, "web", "web2") == {"admin": 8, "op": 2}
    assert haproxy.parse_servers_state(SERVERS_STATE, "web", "web3") == {"admin": 1, "op": 0}


def test_an_unknown_server_is_an_error_not_a_silent_success(haproxy: ModuleType) -> None:
    with pytest.raises(haproxy.RuntimeApiError, match="no server 'web9'"):
        haproxy.parse_servers_state(SERVERS_STATE, "web", "web9")
    with pytest.raises(haproxy.RuntimeApiError, match="unexpected answer"):
        haproxy.parse_servers_state("Can't find backend.\n", "nope", "web1")


def test_sessions_come_from_show_stat(haproxy: ModuleType) -> None:
    assert haproxy.sessions(STAT, "web", "web1") == 2
    assert haproxy.sessions(STAT, "web", "web2") == 0


@pytest.mark.parametrize(
    ("admin", "name"),
    [(0, "ready"), (0x08, "drain"), (0x10, "drain"), (0x01, "maint"), (0x09, "maint"), (0x04, "maint")],
)
def test_admin_state_names(haproxy: ModuleType, admin: int, name: str) -> None:
    assert haproxy.admin_name(admin) == name


@pytest.mark.parametrize(
    ("admin", "desired", "command"),
    [
        (0, "drain", "set server web/web1 state drain"),
        (0x08, "drain", None),
        (0x08, "ready", "set server web/web1 state ready"),
        (0x01, "ready", "set server web/web1 state ready"),
        (0, "ready", None),
        (0x08, "maint", "set server web/web1 state maint"),
        # Drained by its configured weight of 0 (inherited): not the runtime API's to undo, so nothing to send.
        (0x10, "ready", None),
    ],
)
def test_a_command_only_when_the_state_differs(
    haproxy: ModuleType, admin: int, desired: str, command: str | None
) -> None:
    assert haproxy.command_for(admin, desired, "web", "web1") == command


def test_waiting_ends_when_drained_servers_are_idle_and_ready_ones_are_up(haproxy: ModuleType) -> None:
    assert not haproxy.done_waiting("drain", 2, 1)
    assert haproxy.done_waiting("drain", 2, 0)
    assert haproxy.done_waiting("maint", 0, 0)
    assert not haproxy.done_waiting("ready", 1, 0)
    assert haproxy.done_waiting("ready", 2, 5)
