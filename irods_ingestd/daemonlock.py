"""One daemon per zone: an ownership key per zone in Redis, taken at start, renewed every second.

`{prefix}:owner:{zone}` holds the owning daemon's record (a token unique to the process' daemon, host,
pid, pid namespace, start time) with a TTL of 30 s. A daemon takes all its zones at once (one Lua
script: all or none); a second daemon finding one held by a live daemon refuses to start, naming the
holder's host and pid (under systemd, Restart= tries again, so it takes over within seconds once the
holder is gone: a standby by restart). The holder is known to be gone when its key expired, or when it
ran on this host in this pid namespace and its pid no longer exists (a daemon killed with SIGKILL and
restarted does not wait for its own old key).

Renewal re-takes a key that vanished (Redis restarted without its data) and reports a key that another
daemon took meanwhile (this one was stopped or cut off from Redis for longer than the TTL): the caller
must then stop queueing.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from . import daemonclaims, keys

TTL_MS = 30_000

# KEYS: owner keys. ARGV: our value, TTL ms. Takes (or renews) all of them, or none if another daemon
# holds one. Returns {} on success, or {index, holder's value} of the first key held by another.
_TAKE_LUA = """
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur and cur ~= ARGV[1] then return {i, cur} end
end
for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
return {}
"""

# KEYS: one owner key. ARGV: the stale value, our value, TTL ms. Replaces the stale holder only.
_STEAL_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: owner keys. ARGV: our value. Deletes only our own keys.
_RELEASE_LUA = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 1
"""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    pidns: str = ""
    since: float = 0.0
    token: str = ""

    @classmethod
    def parse(cls, raw: bytes | str) -> Holder:
        try:
            d = json.loads(raw)
            return cls(str(d["host"]), int(d["pid"]), str(d.get("pidns", "")), float(d.get("since", 0)),
                       str(d.get("token", "")))
        except (ValueError, KeyError, TypeError):
            return cls("?", 0)

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since)) if self.since else "?"
        return f"the daemon on host {self.host} (pid {self.pid}, running since {since})"


class ZoneTaken(Exception):
    """A zone is owned by another daemon."""

    def __init__(self, zone: str, holder: Holder, text: str = "") -> None:
        self.zone = zone
        self.holder = holder
        super().__init__(text or f"zone {zone!r} is run by {holder.describe()}")


def _pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_gone(pid: int) -> bool:
    """No process of this pid namespace has this pid (EPERM: one exists, another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # EPERM: it exists (another user's)
    return False


def owner_key(prefix: str, zone: str) -> str:
    return keys.owner_key(prefix, zone)


def owner(r: redis.Redis, prefix: str, zone: str) -> Holder | None:
    """Which daemon runs a zone now (None: no daemon)."""
    raw = r.get(owner_key(prefix, zone))
    return Holder.parse(raw) if raw else None


class ZoneOwnership:
    def __init__(self, r: redis.Redis, prefix: str, host: str) -> None:
        self.r = r
        self.prefix = prefix
        self.me = Holder(host, os.getpid(), _pidns(), time.time(), uuid.uuid4().hex)
        self.value = json.dumps({"host": self.me.host, "pid": self.me.pid, "pidns": self.me.pidns,
                                 "since": self.me.since, "token": self.me.token})
        self.zones: set[str] = set()
        self.configs: dict[str, daemonclaims._Zone] = {}  # name → the zone's config (its path, collection)
        self._take = r.register_script(_TAKE_LUA)
        self._steal = r.register_script(_STEAL_LUA)
        self._release = r.register_script(_RELEASE_LUA)

    def _stale(self, h: Holder) -> bool:
        """The holder is a daemon of this host and pid namespace that no longer exists."""
        return (h.host == self.me.host and h.pidns == self.me.pidns and bool(h.pidns) and h.pid != self.me.pid
                and pid_gone(h.pid))

    def acquire(self, zones: Iterable[str]) -> list[tuple[str, Holder]]:
        """Take these zones (all or none); raises ZoneTaken if a live daemon holds one. Returns the stale
        holders replaced (a dead daemon of this host), for the journal."""
        names = sorted(set(zones))
        replaced: list[tuple[str, Holder]] = []
        for _ in range(len(names) + 1):
            res = self._take(keys=[owner_key(self.prefix, z) for z in names], args=[self.value, TTL_MS])
            if not res:
                new = set(names) - self.zones
                self.zones |= set(names)
                try:
                    self.claim(names)
                except ZoneTaken:
                    self.release(new)
                    raise
                return replaced
            zone, raw = names[int(res[0]) - 1], res[1]
            holder = Holder.parse(raw)
            if not self._stale(holder) or not self._steal(keys=[owner_key(self.prefix, zone)],
                                                          args=[raw, self.value, TTL_MS]):
                raise ZoneTaken(zone, holder)
            replaced.append((zone, holder))
        raise ZoneTaken(names[0], Holder("?", 0))

    def _live(self, zone: str, token: str) -> str | None:
        raw = self.r.get(owner_key(self.prefix, zone))
        h = Holder.parse(raw) if raw else None
        return h.describe() if h is not None and h.token == token and not self._stale(h) else None

    def claim(self, names: Iterable[str]) -> None:
        """Record where these zones (held, their configs in `configs`) are; refused if one overlaps a
        zone of another live daemon (daemonclaims), as ZoneTaken."""
        try:
            daemonclaims.claim(self.r, self.prefix, self.me, [self.configs[n] for n in names if n in self.configs],
                               self._live, hold=(self.value, TTL_MS))
        except daemonclaims.KeyTaken as e:
            self.zones.discard(e.zone)
            raise ZoneTaken(e.zone, Holder.parse(e.raw)) from e
        except daemonclaims.ZoneOverlap as e:
            raise ZoneTaken(e.zone, Holder("?", 0), str(e)) from e

    def renew(self) -> None:
        """Renew every zone held; raises ZoneTaken if another daemon took one meanwhile."""
        names = sorted(self.zones)
        if not names:
            return
        res = self._take(keys=[owner_key(self.prefix, z) for z in names], args=[self.value, TTL_MS])
        if res:
            zone = names[int(res[0]) - 1]
            self.zones.discard(zone)
            raise ZoneTaken(zone, Holder.parse(res[1]))
        if any(raw is None for raw in self.r.hmget(keys.claims_key(self.prefix), names)):
            self.claim(names)  # Redis lost them (restarted without its data): recorded again

    def release(self, zones: Iterable[str] | None = None) -> None:
        names = sorted(self.zones if zones is None else set(zones) & self.zones)
        if names:
            daemonclaims.unclaim(self.r, self.prefix, self.me.token, names)
            self._release(keys=[owner_key(self.prefix, z) for z in names], args=[self.value])
        self.zones -= set(names)
