"""A Redis lock per (zone, file): at most one worker ingests a given file at a time.

``SET key token NX PX ttl`` takes it; a compare-and-delete script releases it only if it still holds
this worker's token, so a lock that expired and was taken by another worker is never released by the
first. The TTL bounds how long a killed worker blocks the file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from types import TracebackType

import redis

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_EXTEND_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def lock_key(prefix: str, zone: str, rel: str) -> str:
    h = hashlib.blake2b(os.fsencode(rel), digest_size=12).hexdigest()
    return f"{prefix}:lock:{zone}:{h}"


class FileLock:
    """``with FileLock(...) as held:`` — held is False when another worker has the file."""

    def __init__(self, r: redis.Redis, prefix: str, zone: str, rel: str, ttl: float) -> None:
        self.r = r
        self.key = lock_key(prefix, zone, rel)
        self.ttl_ms = max(1000, int(ttl * 1000))
        self.token = secrets.token_hex(16).encode()
        self.held = False

    def acquire(self) -> bool:
        self.held = bool(self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))
        return self.held

    def extend(self) -> bool:
        """Push the expiry out again (for long transfers); False if the lock was lost."""
        return bool(self.r.eval(_EXTEND_LUA, 1, self.key, self.token, self.ttl_ms))

    def release(self) -> bool:
        if not self.held:
            return False
        self.held = False
        return bool(self.r.eval(_RELEASE_LUA, 1, self.key, self.token))

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self.release()
        except redis.RedisError:
            pass  # it expires by itself
