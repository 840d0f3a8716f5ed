"""What the running daemons' zones cover, so two daemons with different configs never share files.

The ownership keys (`daemonlock`) hold one daemon per zone *name*; two configs can still name one landing
directory (or one inside another) or one collection (or one inside another) under different zone names,
and each daemon would ingest every file: twice, into two places. So each daemon records, per zone it
holds, where the zone really is (its real path and the device and inode of each directory up to /, as
`config_paths` compares them for one config) and its collection, in one hash `{prefix}:claims` (field: the
zone's name). Taking a zone (at start, on reload) compares it with the records of every other live daemon
(its ownership key still holds the record's token) and refuses an overlap, naming both zones, the other
daemon's host and pid, and what overlaps. Paths are compared only between daemons of one host (another
host's `/data/landing` is another disk as far as this one can tell); collections always.

The check and the record are one optimistic Redis transaction (WATCH on the hash), so two daemons starting
at once cannot both pass: one of them sees the other's record. Records of daemons that are gone stay until
a daemon comes across them, and are then dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import redis

from . import keys
from .config_paths import Place, overlap, place


class _Zone(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def path(self) -> Path: ...
    @property
    def collection(self) -> str: ...


class _Holder(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def token(self) -> str: ...


# KEYS: the claims hash. ARGV: our token, then zone names. Deletes those fields that are ours.
_UNCLAIM_LUA = """
for i = 2, #ARGV do
  local raw = redis.call('HGET', KEYS[1], ARGV[i])
  if raw and cjson.decode(raw)['token'] == ARGV[1] then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 1
"""


@dataclass(frozen=True)
class Claim:
    zone: str
    token: str
    host: str
    collection: str
    where: Place

    def to_json(self) -> str:
        return json.dumps({"zone": self.zone, "token": self.token, "host": self.host, "collection": self.collection,
                           "text": self.where.text, "real": self.where.real,
                           "own": list(self.where.own) if self.where.own else None,
                           "chain": sorted(list(x) for x in self.where.chain)})

    @classmethod
    def from_json(cls, raw: bytes | str) -> Claim | None:
        try:
            d = json.loads(raw)
            own = tuple(d["own"]) if d.get("own") else None
            where = Place(str(d["text"]), str(d["real"]), own, frozenset(tuple(x) for x in d["chain"]))
            return cls(str(d["zone"]), str(d["token"]), str(d["host"]), str(d["collection"]), where)
        except (ValueError, KeyError, TypeError):
            return None


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def conflict(mine: Claim, other: Claim) -> str | None:
    """Why these two zones of two daemons must not both run (None: they may)."""
    if mine.host == other.host and overlap(mine.where, other.where):
        return (f"their paths overlap ({mine.where.describe()} and {other.where.describe()}); a file would be "
                f"ingested twice")
    if _nested(mine.collection, other.collection):
        return (f"their collections overlap ({mine.collection} and {other.collection}); files of both would "
                f"meet in one place")
    return None


class KeyTaken(Exception):
    """Another daemon holds the ownership key of a zone this one is recording."""

    def __init__(self, zone: str, raw: bytes) -> None:
        self.zone = zone
        self.raw = raw
        super().__init__(zone)


class ZoneOverlap(Exception):
    """A zone of this daemon overlaps a zone another live daemon runs."""

    def __init__(self, zone: str, other_zone: str, holder_text: str, why: str) -> None:
        self.zone = zone
        super().__init__(f"zone {zone!r} and zone {other_zone!r} of {holder_text}: {why}")


def claim(r: redis.Redis, prefix: str, me: _Holder, zones: Iterable[_Zone],
          live: Callable[[str, str], str | None], hold: tuple[str, int] | None = None) -> None:
    """Record these zones as this daemon's, or raise ZoneOverlap (recording nothing) if one overlaps a zone
    of another live daemon. `live(zone, token)` gives the holder's description if the daemon that wrote a
    record with that token still holds that zone, else None.

    `hold` (the daemon's ownership value and TTL): the zones' ownership keys are set again in the same
    transaction as the records, so a Redis emptied meanwhile never keeps a record without its key (another
    daemon would take it for a dead one's and drop it); KeyTaken if another daemon took a key meanwhile."""
    key = keys.claims_key(prefix)
    mine = [Claim(z.name, me.token, me.host, z.collection, place(z.path)) for z in zones]
    if not mine:
        return
    owners = {keys.owner_key(prefix, m.zone): m.zone for m in mine} if hold else {}
    with r.pipeline() as p:
        while True:
            try:
                p.watch(key, *owners)
                for okey, zone in owners.items():
                    cur: bytes | None = p.get(okey)  # type: ignore[assignment]  # immediate under WATCH
                    if cur is not None and hold and cur != hold[0].encode():
                        raise KeyTaken(zone, cur)
                gone: list[str] = []
                current: dict[bytes, bytes] = p.hgetall(key)  # type: ignore[assignment]  # immediate under WATCH
                for field, raw in current.items():
                    other = Claim.from_json(raw)
                    if other is None or other.token == me.token:
                        continue
                    holder = live(other.zone, other.token)
                    if holder is None:
                        gone.append(field.decode() if isinstance(field, bytes) else str(field))
                        continue
                    for m in mine:
                        why = conflict(m, other)
                        if why:
                            raise ZoneOverlap(m.zone, other.zone, holder, why)
                p.multi()
                if gone:
                    p.hdel(key, *gone)
                p.hset(key, mapping={m.zone: m.to_json() for m in mine})
                for okey in owners:
                    assert hold is not None
                    p.set(okey, hold[0], px=hold[1])
                p.execute()
                return
            except redis.WatchError:
                continue


def unclaim(r: redis.Redis, prefix: str, token: str, names: Iterable[str]) -> None:
    names = sorted(names)
    if names:
        r.eval(_UNCLAIM_LUA, 1, keys.claims_key(prefix), token, *names)


def running_overlaps(r: redis.Redis, prefix: str, host: str, zones: Iterable[_Zone]) -> list[str]:
    """For check-config: the zones of a config that overlap a zone another live daemon runs under another
    name (a zone of the same name is that daemon's own, or refused by its ownership key)."""
    from .daemonlock import owner  # daemonlock imports this module

    mine = [Claim(z.name, "", host, z.collection, place(z.path)) for z in zones]
    out: list[str] = []
    for raw in r.hvals(keys.claims_key(prefix)):
        other = Claim.from_json(raw)
        if other is None or any(m.zone == other.zone for m in mine):
            continue
        h = owner(r, prefix, other.zone)
        if h is None or h.token != other.token:
            continue
        for m in mine:
            why = conflict(m, other)
            if why:
                out.append(f"zone {m.zone!r} and zone {other.zone!r} of {h.describe()}: {why}")
    return out
