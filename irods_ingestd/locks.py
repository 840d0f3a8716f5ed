"""A Redis lock per (zone, file): at most one worker ingests a given file at a time.

``SET key token NX PX ttl`` takes it; a compare-and-delete script releases it only if it still holds
this worker's token, so a lock that expired and was taken by another worker is never released by the
first. The TTL is short (a killed worker blocks the file for at most that long): while a file is being
ingested a keeper thread renews it every third of the TTL, however long the transfer takes.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from types import TracebackType

import redis

from . import keys

log = logging.getLogger(__name__)

DEFAULT_TTL = 35.0

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def lock_key(prefix: str, zone: str, rel: str) -> str:
    return keys.lock_key(prefix, zone, rel)


class FileLock:
    """``with FileLock(...) as held:`` — held is False when another worker has the file."""

    def __init__(self, r: redis.Redis, prefix: str, zone: str, rel: str, ttl: float = DEFAULT_TTL,
                 keep_alive: bool = True) -> None:
        self.r = r
        self.key = lock_key(prefix, zone, rel)
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.token = secrets.token_hex(16).encode()
        self.held = False
        self.keep_alive = keep_alive
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> bool:
        self.held = bool(self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if self.held and self.keep_alive:
            self._stop.clear()
            self._keeper = threading.Thread(target=self._keep, name="lock-keeper", daemon=True)
            self._keeper.start()
        return self.held

    def _keep(self) -> None:
        while not self._stop.wait(self.ttl_ms / 3000):
            try:
                if not self.extend():
                    log.warning("lost the lock %s (expired while held)", self.key)
                    return
            except redis.RedisError as e:  # Redis away for a moment: the lock expires by itself if it stays away
                log.debug("could not renew the lock %s: %s", self.key, e)

    def extend(self) -> bool:
        """Push the expiry out again (for long transfers); False if the lock was lost."""
        return bool(self.r.eval(_EXTEND_LUA, 1, self.key, self.token, self.ttl_ms))

    def still_held(self) -> bool:
        """Is the lock still this worker's? (False after it expired, or when Redis cannot say.)"""
        if not self.held:
            return False
        try:
            return bool(self.r.get(self.key) == self.token)
        except redis.RedisError:
            return False

    def release(self) -> bool:
        """Give the lock up; never raises (a lock that cannot be released expires after its TTL)."""
        if not self.held:
            return False
        self.held = False
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(5)
            self._keeper = None
        try:
            return bool(self.r.eval(_RELEASE_LUA, 1, self.key, self.token))
        except redis.RedisError as e:
            log.warning("could not release the lock %s (it expires by itself): %s", self.key, e)
            return False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def acquire_many(r: redis.Redis, prefix: str, zone: str, rels: Sequence[str],
                 ttl: float = DEFAULT_TTL) -> list[FileLock | None]:
    """The locks of many files in one round trip (None where another worker has the file). None of them has
    a keeper thread of its own: hold them inside a :class:`Keeper`, which renews them all."""
    locks = [FileLock(r, prefix, zone, rel, ttl, keep_alive=False) for rel in rels]
    pipe = r.pipeline(transaction=False)
    for lk in locks:
        pipe.set(lk.key, lk.token, nx=True, px=lk.ttl_ms)
    for lk, ok in zip(locks, pipe.execute(), strict=True):
        lk.held = bool(ok)
    return [lk if lk.held else None for lk in locks]


def release_many(r: redis.Redis, locks: Sequence[FileLock]) -> None:
    """Give up every lock still held, in one round trip; never raises (unreleased locks expire)."""
    held = [lk for lk in locks if lk.held]
    for lk in held:
        lk.held = False
    if not held:
        return
    try:
        pipe = r.pipeline(transaction=False)
        for lk in held:
            pipe.eval(_RELEASE_LUA, 1, lk.key, lk.token)
        pipe.execute()
    except redis.RedisError as e:
        log.warning("could not release %d locks (they expire by themselves): %s", len(held), e)


class Keeper:
    """One thread renewing a batch's locks every third of their TTL (a thread a lock costs more than the
    bulk register of the file itself)."""

    def __init__(self, r: redis.Redis, locks: Sequence[FileLock]) -> None:
        self.r = r
        self.locks = list(locks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep, name="lock-keeper", daemon=True)

    def _keep(self) -> None:
        ttl_ms = min((lk.ttl_ms for lk in self.locks), default=int(DEFAULT_TTL * 1000))
        while not self._stop.wait(ttl_ms / 3000):
            held = [lk for lk in self.locks if lk.held]
            try:
                pipe = self.r.pipeline(transaction=False)
                for lk in held:
                    pipe.eval(_EXTEND_LUA, 1, lk.key, lk.token, lk.ttl_ms)
                for lk, ok in zip(held, pipe.execute(), strict=True):
                    if not ok and lk.held:  # (not one released meanwhile)
                        log.warning("lost the lock %s (expired while held)", lk.key)
            except redis.RedisError as e:
                log.debug("could not renew %d locks: %s", len(held), e)

    def __enter__(self) -> Keeper:
        if self.locks:
            self._thread.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
