"""A Sentinel connection pool that follows the master when it moves.

redis-py's Sentinel pool asks the sentinels where the master is only when it opens a connection. After a
failover its open connections keep talking to the old master, which goes on accepting writes until Sentinel
demotes it (about ten seconds later with Sentinel's defaults); those writes are then thrown away, and a worker
blocked in RQ's dequeue on the old master sees no new job for up to a minute. So each pool in use has a small
thread that asks the sentinels every second which server is master and, when it changed, closes every
connection of the pool, those in use too: the command in flight fails with a connection error, which the
client retries (`redisconn`'s Retry) on a new connection to the new master. `master_changes` counts the moves,
so the daemon can walk its zones again for what the old master may have taken with it (`redishealth`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from typing import Any

import redis
from redis.sentinel import SentinelConnectionPool, SentinelManagedConnection

log = logging.getLogger("irods_ingestd.redis")

CHECK_EVERY = 1.0  # seconds between two questions to the sentinels


class FollowingConnection(SentinelManagedConnection):
    """Reconnects to the master the sentinels name now. redis-py 8 reconnects a dropped connection inside a
    command's retry through `connect_check_health`, to the host and port it had: after a failover, the old
    master again."""

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> Any:
        if getattr(self, "_sock", None) is None and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        parent: Any = super()  # redis-py 8's method; the type stubs describe an older redis-py
        return parent.connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


class FollowingSentinelPool(SentinelConnectionPool):
    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        kwargs.setdefault("connection_class", FollowingConnection)
        super().__init__(service_name, sentinel_manager, **kwargs)
        self.master_changes = 0
        self._known: tuple[Any, ...] | None = None  # the master at the last look
        self._watch: threading.Thread | None = None
        self._watch_lock = threading.Lock()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master and (self._watch is None or not self._watch.is_alive()):  # not yet, or after a fork
            self._start_watch()
        return super().get_connection(*args, **kwargs)

    def _start_watch(self) -> None:
        with self._watch_lock:
            if self._watch is None or not self._watch.is_alive():
                self._watch = threading.Thread(target=_watch, args=(weakref.ref(self),), daemon=True,
                                               name=f"sentinel-follow-{self.service_name}")
                self._watch.start()

    def follow(self) -> bool:
        """Ask the sentinels once; close every connection open to a server that is not the master now (in
        use or idle; opened before the failover, or by a thread that raced it). True if the master moved."""
        try:
            now = tuple(self.sentinel_manager.discover_master(self.service_name))
        except redis.RedisError:  # no sentinel answers, or none knows a master (a failover under way)
            return False
        moved = self._known is not None and now != self._known
        if moved:
            assert self._known is not None
            log.warning("Redis master of %r moved from %s:%s to %s:%s (Sentinel failover): reconnecting",
                        self.service_name, self._known[0], self._known[1], now[0], now[1])
            self.master_changes += 1
        self._known = now
        with getattr(self, "_lock"):  # noqa: B009 - the pool's own lock (not in the type stubs)
            for c in getattr(self, "_available_connections", ()):
                if getattr(c, "_sock", None) is not None and (c.host, c.port) != now:
                    c.disconnect()
            for c in getattr(self, "_in_use_connections", ()):
                sock = getattr(c, "_sock", None)
                if sock is not None and (c.host, c.port) != now:
                    # shut down, not closed: the thread using it (a blocked dequeue, a subscriber) reads the end of
                    # the stream as a connection error and reconnects by itself, never finding its socket gone
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
        return moved


def _watch(ref: weakref.ReferenceType[FollowingSentinelPool]) -> None:
    while True:
        time.sleep(CHECK_EVERY)
        pool = ref()
        if pool is None:  # the client is gone: so is its watch
            return
        try:
            pool.follow()
        except Exception as e:  # noqa: BLE001 - the watch must outlive any one odd answer
            log.debug("following the Redis master: %s", e)
        del pool
