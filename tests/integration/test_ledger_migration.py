"""A daemon started on a ledger of the first layout (one hash a directory, 25-byte done entries): it reads it
as it is (its walk queues none of the files the ledger holds as done), compacts it by its start-up recount
(a directory above 128 entries split into listpack buckets, done entries cut to 17 bytes), and a file new
to a compacted directory is queued once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from irods_ingestd.ledger import DONE, Ledger
from tests.daemon_harness import DaemonThread, make_config, queued, wait_for
from tests.ledger_v1 import write_v1_done


def make_tree(root: Path, shape: dict[str, int]) -> list[tuple[str, int, int]]:
    old = time.time() - 3600
    out = []
    for d, n in shape.items():
        (root / d).mkdir(parents=True)
        for i in range(n):
            p = root / d / f"f{i:05d}.dat"
            p.write_bytes(b"x" * (i % 7))
            os.utime(p, (old, old))
            st = p.stat()
            out.append((f"{d}/{p.name}", st.st_size, st.st_mtime_ns))
    return out


def test_a_daemon_reads_and_compacts_a_ledger_of_the_first_layout(tmp_path, redis_server, redis_conn):
    zone_dir = tmp_path / "landing"
    files = make_tree(zone_dir, {"big": 1000, "small": 30, "deep/er": 200})
    write_v1_done(redis_conn, "z1", files)
    led = Ledger(redis_conn)
    big = led.dir_key("z1", "big")
    assert redis_conn.object("encoding", big) == b"hashtable"
    cfg = make_config(tmp_path, redis_server.url, [{
        "name": "z1", "path": str(zone_dir), "collection": "/tempZone/home/rods/z1", "settle": "1s",
        "rescan": "1h", "watcher": "poll", "poll_interval": "0.5s"}])
    with DaemonThread(cfg, redis_conn) as dt:
        wait_for(lambda: "z1" in dt.daemon.zones and dt.daemon.zones["z1"].walks_done >= 2
                 and not dt.daemon.recounts, timeout=60)
        assert dt.daemon.zones["z1"].walks_done >= 2
        assert queued(redis_conn) == []  # every file read as done: nothing queued again
        # the start-up recount compacted the first layout
        assert redis_conn.hkeys(big) == [b""]
        buckets = list(redis_conn.scan_iter(match=big + ".*"))
        assert len(buckets) >= 8
        assert all(redis_conn.object("encoding", k) == b"listpack" for k in buckets)
        entries = [kv for k in redis_conn.scan_iter(match=led.dir_pattern("z1")) for kv in redis_conn.hgetall(k).items()
                   if kv[0] != b""]
        assert len(entries) == len(files) and {len(v) for _, v in entries} == {17}
        assert all(e is not None and e.state == DONE for e in led.get_many("z1", [f[0] for f in files]))
        # a new file in the compacted directory is queued, once
        (zone_dir / "big" / "new.dat").write_bytes(b"new")
        wait_for(lambda: queued(redis_conn), timeout=30)
        walks = dt.daemon.zones["z1"].walks_done
        wait_for(lambda: dt.daemon.zones["z1"].walks_done >= walks + 1, timeout=30)
    assert [q[1] for q in queued(redis_conn)] == ["big/new.dat"]
    assert led.stats("z1")["queued"] == 1 and led.stats("z1")["done"] == len(files)
