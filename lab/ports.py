"""Host ports for the VMs' forwarded SSH and HTTP: loopback only, never two VMs on one port."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable

# Above the demo's fixed ports (2222, 8080) so an ad-hoc VM never steals them while the demo is down.
RANGE_START = 2300
RANGE_END = 2999


def is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port right now (QEMU's hostfwd would fail on a taken one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def allocate(
    count: int,
    recorded: Iterable[int],
    probe: Callable[[int], bool] = is_free,
    start: int = RANGE_START,
    end: int = RANGE_END,
) -> list[int]:
    """The ``count`` lowest ports in [start, end] that no VM has recorded and that are free on loopback.

    Recorded ports count as taken even while their VM is still booting and not yet listening; the caller holds the
    lab lock from allocation until the ports are recorded, so two `up`s cannot pick the same ones.
    """
    if count <= 0:
        return []
    taken = set(recorded)
    chosen: list[int] = []
    for port in range(start, end + 1):
        if port in taken or not probe(port):
            continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise RuntimeError(f"no {count} free ports left in {start}-{end}")
