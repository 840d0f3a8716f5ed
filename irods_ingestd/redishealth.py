"""Redis health as the daemon sees it: down (waited out, logged once), back, or back without its data.

A Redis that lost its data (restarted without persistence) is noticed by its epoch key changing: every
zone is then walked again to queue what is not in iRODS. So is a Sentinel failover (the client's pool counts
the master's moves, `sentinel_pool.py`): writes the old master took after the replica was promoted are gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from . import keys

log = logging.getLogger("irods_ingestd.daemon")


class RedisHealth:
    def __init__(self, r: redis.Redis, prefix: str, on_data_lost: Callable[[], None],
                 on_back: Callable[[], None] | None = None) -> None:
        self.r = r
        self.key = keys.epoch_key(prefix)
        self.on_data_lost = on_data_lost
        self.on_back = on_back
        self.down_since: float | None = None
        self.errors = 0
        self._epoch: bytes | None = None
        self._moves = self._master_moves()

    def error(self, e: Exception) -> None:
        self.errors += 1
        if self.down_since is None:
            self.down_since = time.monotonic()
            # a Redis that answers with an error (full: maxmemory with noeviction; a read-only replica) is up
            what = "refuses the daemon's commands" if isinstance(e, redis.ResponseError) else "is not answering"
            log.error("Redis %s (%s): files keep settling and will be queued when it is back", what, e)

    def down(self) -> bool:
        """True while Redis is away (asked again every 2 s at most)."""
        if self.down_since is None:
            return False
        if time.monotonic() - self.down_since < 2.0:
            return True
        try:
            self.r.ping()
        except redis.RedisError:
            self.down_since = time.monotonic()
            return True
        log.info("Redis answers again")
        self.down_since = None
        self.check_epoch()
        if self.on_back is not None:
            self.on_back()
        return False

    def _master_moves(self) -> int:
        return int(getattr(self.r.connection_pool, "master_changes", 0))

    def check_epoch(self) -> None:
        """Notice a Redis that lost its data (restarted without persistence) or failed over to another master."""
        moves = self._master_moves()
        if moves != self._moves:
            self._moves = moves
            log.warning("Redis failed over to another master: walking every zone to queue again what the old "
                        "master may have taken with it")
            self.on_data_lost()
        try:
            cur = self.r.get(self.key)
            if cur is None:
                cur = f"{time.time():.6f}".encode()
                self.r.set(self.key, cur, nx=True)
                cur = self.r.get(self.key)
        except redis.RedisError as e:
            self.error(e)
            return
        if self._epoch is not None and cur != self._epoch:
            log.warning("Redis lost its data (restarted without persistence?): walking every zone to "
                        "queue again what is not in iRODS")
            self.on_data_lost()
        self._epoch = cur
