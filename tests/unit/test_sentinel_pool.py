"""The Sentinel pool's look at the master: a move closes what is open to the old one, nothing else."""

from __future__ import annotations

import socket
from typing import Any

from irods_ingestd.sentinel_pool import FollowingSentinelPool


class Manager:
    def __init__(self) -> None:
        self.master: tuple[str, int] = ("10.0.0.1", 6379)

    def discover_master(self, name: str) -> tuple[str, int]:
        return self.master


class Sock:
    def __init__(self) -> None:
        self.shut = False

    def shutdown(self, how: int) -> None:
        assert how == socket.SHUT_RDWR
        self.shut = True


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: Any = Sock()

    def disconnect(self) -> None:
        self._sock = None


def test_a_move_closes_the_connections_to_the_old_master_only() -> None:
    mgr = Manager()
    pool = FollowingSentinelPool("mymaster", mgr)
    old_idle, old_busy = Conn("10.0.0.1", 6379), Conn("10.0.0.1", 6379)
    pool._available_connections.append(old_idle)  # type: ignore[attr-defined]
    pool._in_use_connections.add(old_busy)  # type: ignore[attr-defined]
    assert not pool.follow() and pool.master_changes == 0  # the first look only learns where the master is
    assert old_idle._sock is not None and not old_busy._sock.shut
    mgr.master = ("10.0.0.2", 6379)
    new_busy = Conn("10.0.0.2", 6379)
    pool._in_use_connections.add(new_busy)  # type: ignore[attr-defined]
    assert pool.follow() and pool.master_changes == 1
    assert old_idle._sock is None  # idle: closed
    assert old_busy._sock.shut  # in use: shut down, for its own thread to find and reconnect
    assert not new_busy._sock.shut
    assert not pool.follow() and pool.master_changes == 1  # no move, nothing more
