"""The ledger's compact layout against a real Redis: 17-byte done entries, directories above 128 files split
into buckets that stay in listpack encoding, every state change and the `queued` count exact across a split,
and a ledger of the first layout read as it is and compacted lazily and by a recount."""

from __future__ import annotations

import redis

from irods_ingestd.ledger import DONE, FAILED, QUEUED, Ledger, is_current, name_field
from irods_ingestd.ledger_lua import LIMIT
from irods_ingestd.recount import Recount
from tests.ledger_v1 import v1_done_value, write_v1_done


def files(d: str, n: int, size: int = 7) -> list[tuple[str, int, int]]:
    return [(f"{d}/f{i:05d}.dat", size + i, 1_700_000_000_000_000_000 + i) for i in range(n)]


def dir_keys(r: redis.Redis, led: Ledger, zone: str, d: str) -> list[bytes]:
    base = led.dir_key(zone, d).encode()
    return sorted(k for k in r.scan_iter(match=base + b"*", count=1000))


def queue(r: redis.Redis, led: Ledger, zone: str, fs: list[tuple[str, int, int]], job: str = "b-1") -> None:
    pipe = r.pipeline(transaction=True)
    led.mark_queued(pipe, zone, [(*f, job) for f in fs])
    pipe.execute()


def test_a_small_directory_is_one_hash_of_17_byte_done_entries(redis_conn):
    led = Ledger(redis_conn)
    fs = files("a", 100)
    for rel, size, mtime in fs:
        assert led.mark_done("z", rel, size, mtime, b"\x01" * 32)
    keys = dir_keys(redis_conn, led, "z", "a")
    assert keys == [led.dir_key("z", "a").encode()]
    values = redis_conn.hvals(keys[0])
    assert len(values) == 100 and {len(v) for v in values} == {17}
    assert redis_conn.object("encoding", keys[0]) == b"listpack"
    e = led.get("z", "a/f00003.dat")
    assert e is not None and (e.state, e.size, e.mtime_ns) == (DONE, 10, fs[3][2])


def test_a_large_directory_is_split_into_listpack_buckets_and_reads_whole(redis_conn):
    led = Ledger(redis_conn)
    fs = files("big", 1000)
    for rel, size, mtime in fs:
        led.mark_done("z", rel, size, mtime, b"")
    keys = dir_keys(redis_conn, led, "z", "big")
    assert len(keys) > 8
    base = led.dir_key("z", "big").encode()
    assert redis_conn.hkeys(base) == [b""]  # the base holds only the bucket count
    for k in keys:
        assert redis_conn.hlen(k) <= LIMIT
        assert redis_conn.object("encoding", k) == b"listpack"
    assert sum(redis_conn.hlen(k) for k in keys if k != base) == 1000
    entries = led.get_many("z", [f[0] for f in fs] + ["big/nope"])
    assert entries[-1] is None
    assert all(e is not None and e.state == DONE and e.size == f[1] for e, f in zip(entries, fs, strict=False))
    (whole,) = led.dirs("z", ["big"])
    assert len(whole) == 1000 and b"" not in whole
    assert all(is_current(whole[name_field(rel.rpartition("/")[2])], size, mtime, 0) for rel, size, mtime in fs)
    assert led.stats("z")["done"] == 1000


def test_states_and_the_queued_count_stay_exact_across_splits(redis_conn):
    led = Ledger(redis_conn)
    fs = files("d", 600)
    queue(redis_conn, led, "z", fs[:100])
    queue(redis_conn, led, "z", fs[100:600], job="b-2")  # splits the directory in the middle of a script
    assert led.stats("z")["queued"] == 600
    assert len(dir_keys(redis_conn, led, "z", "d")) > 2
    queue(redis_conn, led, "z", fs[:10], job="b-3")  # queued again (a lost job): no change of the count
    assert led.stats("z")["queued"] == 600
    for rel, size, mtime in fs[:300]:
        assert led.mark_done("z", rel, size, mtime, b"")
    assert not led.mark_done("z", fs[300][0], 1, 1, b"")  # a result for another version: nothing
    assert led.stats("z")["queued"] == 300
    rel, size, mtime = fs[301]
    assert led.mark_failed("z", rel, size, mtime, "bad", only_queued=True)
    assert led.get("z", rel).state == FAILED  # type: ignore[union-attr]
    led.clear_failure("z", rel)
    assert led.get("z", rel) is None
    raw = redis_conn.hget(led.dir_key("z", "d"), b"")
    assert raw is not None
    lost = fs[302]
    (whole,) = led.dirs("z", ["d"])
    assert led.drop_lost("z", lost[0], whole[name_field(lost[0].rpartition("/")[2])])
    assert led.get("z", lost[0]) is None
    assert led.drop_done("z", fs[0][0], fs[0][1], fs[0][2]) and led.get("z", fs[0][0]) is None
    assert led.forget("z", fs[1][0], fs[1][1], fs[1][2]) and led.get("z", fs[1][0]) is None
    assert led.stats("z")["queued"] == 300 - 2
    assert [e.state for e in led.get_many("z", [f[0] for f in fs[303:306]])] == [QUEUED] * 3
    assert led.get("z", fs[303][0]).job == "b-2"  # type: ignore[union-attr]
    redis_conn.hset(led.stats_key("z"), "queued", 12345)
    assert Recount(led, ["z"], scan_count=7).run()
    assert led.stats("z")["queued"] == 298


def test_a_recount_stays_exact_while_a_directory_is_split_under_it(redis_conn):
    led = Ledger(redis_conn)
    for d in range(20):
        queue(redis_conn, led, "z", files(f"d{d}", 50))
    rc = Recount(led, ["z"], scan_count=3)
    rc.step()
    rc.step()
    for d in range(20):  # every directory grows past LIMIT and is split, some counted already, some not
        queue(redis_conn, led, "z", files(f"d{d}", 300)[50:])
        rel, size, mtime = files(f"d{d}", 1)[0]
        led.mark_done("z", rel, size, mtime, b"")
    redis_conn.hset(led.stats_key("z"), "queued", 0)
    assert rc.run()
    assert led.stats("z")["queued"] == 20 * 299


def test_a_ledger_of_the_first_layout_is_read_then_compacted(redis_conn):
    led = Ledger(redis_conn)
    big, small = files("old", 1000), files("little", 20)
    write_v1_done(redis_conn, "z", big + small)
    base = led.dir_key("z", "old")
    assert redis_conn.object("encoding", base) == b"hashtable"
    assert len(redis_conn.hget(base, name_field("f00001.dat")) or b"") == 25
    # read as it is
    entries = led.get_many("z", [f[0] for f in big + small])
    assert all(e is not None and e.state == DONE and (e.size, e.mtime_ns) == f[1:]
               for e, f in zip(entries, big + small, strict=True))
    whole, little = led.dirs("z", ["old", "little"])
    assert len(whole) == 1000 and len(little) == 20
    assert all(is_current(whole[name_field(rel[4:])], size, mtime, 0) for rel, size, mtime in big)
    # a file entering it splits it lazily, and the entries moved are compacted
    queue(redis_conn, led, "z", [("old/new.dat", 1, 2)])
    assert redis_conn.hkeys(base) == [b""]
    assert led.get("z", "old/new.dat").state == QUEUED  # type: ignore[union-attr]
    buckets = [k for k in dir_keys(redis_conn, led, "z", "old") if k != base.encode()]
    assert all(redis_conn.object("encoding", k) == b"listpack" for k in buckets)
    assert {len(v) for k in buckets for v in redis_conn.hvals(k)} == {17, 25 + len("b-1")}
    assert led.stats("z")["queued"] == 1
    # a recount compacts the small directory's done entries too
    assert {len(v) for v in redis_conn.hvals(led.dir_key("z", "little"))} == {25}
    assert Recount(led, ["z"]).run()
    assert {len(v) for v in redis_conn.hvals(led.dir_key("z", "little"))} == {17}
    assert led.stats("z")["queued"] == 1
    assert all(e is not None and e.state == DONE for e in led.get_many("z", [f[0] for f in big + small]))


def test_a_recount_splits_a_large_directory_of_the_first_layout(redis_conn):
    led = Ledger(redis_conn)
    write_v1_done(redis_conn, "z", files("old", 500))
    old_q = v1_done_value(1, 1)[:1]
    assert old_q == DONE
    assert Recount(led, ["z"]).run()
    keys = dir_keys(redis_conn, led, "z", "old")
    assert len(keys) > 4
    assert all(redis_conn.object("encoding", k) == b"listpack" for k in keys)
    assert all(e is not None and e.state == DONE for e in led.get_many("z", [f[0] for f in files("old", 500)]))


def test_many_files_of_one_unsplit_directory_are_read_in_one_call(redis_conn):
    led = Ledger(redis_conn)
    fs = files("old", 12_000)
    write_v1_done(redis_conn, "z", fs)  # one hash of 12,000 fields (the first layout)
    entries = led.get_many("z", [f[0] for f in fs])
    assert len(entries) == 12_000 and all(e is not None and e.state == DONE for e in entries)
