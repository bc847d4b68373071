import socket

import pytest

from lab import ports


def test_allocate_skips_recorded_and_busy_ports() -> None:
    busy = {2300, 2303}
    got = ports.allocate(2, recorded=[2301, 2302], probe=lambda p: p not in busy)
    assert got == [2304, 2305]


def test_allocate_returns_lowest_free_ports_in_order() -> None:
    assert ports.allocate(2, recorded=[], probe=lambda p: True) == [ports.RANGE_START, ports.RANGE_START + 1]


def test_allocate_never_hands_out_the_demo_ports() -> None:
    got = ports.allocate(2, recorded=[], probe=lambda p: True, start=ports.RANGE_START)
    assert 2222 not in got and 8080 not in got


def test_allocate_fails_when_the_range_is_exhausted() -> None:
    with pytest.raises(RuntimeError, match="no 2 free ports"):
        ports.allocate(2, recorded=[10, 11], probe=lambda p: True, start=10, end=12)


def test_is_free_sees_a_listener() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not ports.is_free(s.getsockname()[1])


def test_allocate_nothing_when_both_ports_are_fixed() -> None:
    assert ports.allocate(0, recorded=[], probe=lambda p: False) == []
