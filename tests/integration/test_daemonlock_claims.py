"""A zone's ownership key and its claim record (daemonlock + daemonclaims) against a real Redis: the two are
written together, so no daemon ever sees a live daemon's claim without its ownership key and drops it as
gone (CI, session 4: a Redis emptied between the renewal's two writes let an overlapping daemon start, and
the first daemon then stopped on its next renewal)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from irods_ingestd import keys
from irods_ingestd.daemonlock import ZoneOwnership, ZoneTaken


@dataclass(frozen=True)
class _Z:
    name: str
    path: Path
    collection: str


def _owner(r: redis.Redis, prefix: str, zone: str) -> ZoneOwnership:
    return ZoneOwnership(r, prefix, "thishost")


def _both_or_neither(r: redis.Redis, prefix: str, zone: str) -> tuple[bool, bool]:
    return bool(r.exists(keys.owner_key(prefix, zone))), r.hget(keys.claims_key(prefix), zone) is not None


def _held(r: redis.Redis, tmp_path: Path, name: str, path: Path, coll: str) -> ZoneOwnership:
    o = ZoneOwnership(r, "ingestd", "thishost")
    o.configs[name] = _Z(name, path, coll)
    o.acquire([name])
    return o


@pytest.mark.parametrize("where", ["take", "claim-read"])
def test_redis_emptied_inside_a_renewal_leaves_key_and_claim_together(redis_conn, tmp_path, where):
    """Redis loses its data between the renewal's take of the key and its look at the claims (or while the
    claim is being written): afterwards the key and the claim are both there, never one alone."""
    (tmp_path / "a").mkdir()
    a = _held(redis_conn, tmp_path, "a", tmp_path / "a", "/tempZone/home/rods/a")
    take = a._take
    fired = []

    def take_then_flush(*args, **kw):
        out = take(*args, **kw)
        if not fired:
            fired.append(1)
            redis_conn.flushall()
        return out

    if where == "take":
        a._take = take_then_flush  # type: ignore[method-assign]
        a.renew()
    else:
        real_hgetall = redis.client.Pipeline.hgetall

        def hgetall_then_flush(self, name):  # the claim's read under WATCH, then the data goes
            out = real_hgetall(self, name)
            if not fired:
                fired.append(1)
                redis_conn.flushall()
            return out

        redis_conn.flushall()
        mp = pytest.MonkeyPatch()
        mp.setattr(redis.client.Pipeline, "hgetall", hgetall_then_flush)
        try:
            a.renew()
        finally:
            mp.undo()
    assert fired
    assert _both_or_neither(redis_conn, "ingestd", "a") == (True, True)
    (tmp_path / "a" / "sub").mkdir()
    b = ZoneOwnership(redis_conn, "ingestd", "thishost")
    b.configs["b"] = _Z("b", tmp_path / "a" / "sub", "/tempZone/home/rods/b")
    with pytest.raises(ZoneTaken, match="their paths overlap"):
        b.acquire(["b"])
    a.renew()  # the first daemon keeps its zone
    assert _both_or_neither(redis_conn, "ingestd", "a") == (True, True)
    assert not redis_conn.exists(keys.owner_key("ingestd", "b"))


def test_a_claim_whose_key_another_daemon_took_is_refused_not_overwritten(redis_conn, tmp_path):
    """Redis emptied, then another daemon took this zone's name before this one renewed: the renewal
    reports the zone taken and writes neither the key nor a claim over the other's."""
    (tmp_path / "a").mkdir()
    a = _held(redis_conn, tmp_path, "a", tmp_path / "a", "/tempZone/home/rods/a")
    redis_conn.flushall()
    other = _held(redis_conn, tmp_path, "a", tmp_path / "a", "/tempZone/home/rods/a")
    with pytest.raises(ZoneTaken):
        a.renew()
    raw = redis_conn.hget(keys.claims_key("ingestd"), "a")
    assert raw is not None and other.me.token.encode() in raw
    assert other.me.token.encode() in redis_conn.get(keys.owner_key("ingestd", "a"))
