"""A Redis lock per (zone, file): at most one worker ingests a given file at a time.

``SET key token NX PX ttl`` takes it; a compare-and-delete script releases it only if it still holds
this worker's token, so a lock that expired and was taken by another worker is never released by the
first. The TTL is short (a killed worker blocks the file for at most that long): while a file is being
ingested a keeper thread renews it every third of the TTL, however long the transfer takes.

The token says who holds the lock: this machine's boot id and pid namespace, and the worker's pid. A worker
that finds a file locked by a worker of its own machine whose pid no longer exists (killed, OOM) takes the
lock over at once (compare-and-set on the dead holder's token) instead of waiting out the TTL; a lock of
another machine, or of a live pid, is left to its holder or its TTL.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Sequence
from types import TracebackType

import redis

from . import keys
from .daemonlock import pid_gone

log = logging.getLogger(__name__)

DEFAULT_TTL = 35.0

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_STEAL_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return false
"""

_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def lock_key(prefix: str, zone: str, rel: str) -> str:
    return keys.lock_key(prefix, zone, rel)


def _machine() -> str:
    """This boot of this machine and this pid namespace: where a pid means one process ('' if unknown)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""
    return f"{boot}/{ns}"


MACHINE = _machine()


def holder_token(pid: int | None = None, machine: str | None = None) -> bytes:
    """A lock's value: who holds it (see the module's docstring), and a random part making it unique."""
    m = MACHINE if machine is None else machine
    return f"w1|{m}|{os.getpid() if pid is None else pid}|{secrets.token_hex(12)}".encode()


def dead_holder(raw: bytes | None) -> int | None:
    """The pid of the worker holding a lock, if it was a worker of this machine that no longer exists."""
    parts = raw.split(b"|") if raw else []
    if len(parts) != 4 or parts[0] != b"w1" or not MACHINE or parts[1] != MACHINE.encode():
        return None
    try:
        pid = int(parts[2])
    except ValueError:
        return None
    if pid <= 0 or pid == os.getpid():
        return None
    return pid if pid_gone(pid) else None


def _take_over(r: redis.Redis, key: str, raw: bytes, token: bytes, ttl_ms: int) -> bool:
    """Replace a dead holder's lock by ours (only if it is still that holder's)."""
    pid = dead_holder(raw)
    if pid is None or not r.eval(_STEAL_LUA, 1, key, raw, token, ttl_ms):
        return False
    log.info("took over the lock %s of a worker of this machine that is gone (pid %d)", key, pid)
    return True


class FileLock:
    """``with FileLock(...) as held:`` — held is False when another worker has the file."""

    def __init__(self, r: redis.Redis, prefix: str, zone: str, rel: str, ttl: float = DEFAULT_TTL,
                 keep_alive: bool = True) -> None:
        self.r = r
        self.key = lock_key(prefix, zone, rel)
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.token = holder_token()
        self.held = False
        self.keep_alive = keep_alive
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def acquire(self) -> bool:
        self.held = bool(self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if not self.held:
            raw: bytes | None = self.r.get(self.key)
            self.held = raw is not None and _take_over(self.r, self.key, raw, self.token, self.ttl_ms)
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
    refused = [lk for lk in locks if not lk.held]
    if refused:
        for lk, raw in zip(refused, r.mget([lk.key for lk in refused]), strict=True):
            lk.held = raw is not None and _take_over(r, lk.key, raw, lk.token, lk.ttl_ms)
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
