"""Ledger bytes: Redis memory a file costs in a keep/register zone's ledger (done entries, which stay
forever), for each layout, at 100, 1,000 and 10,000 files a directory.

    python -m bench.run --only ledger          # or: python -m bench.ledger_bytes [--files N] [--port P]

Each layout is written into a redis-server of its own, started for it, and measured two ways: the sum
of `MEMORY USAGE key SAMPLES 0` over the keys (exact for every element), and the `INFO memory` used_memory
delta (what the server's allocator holds, the keyspace's own tables and the loaded scripts included), each
divided by the files; and the server's CPU a done file costs (`INFO commandstats` evalsha usec_per_call) for
the layouts written by their scripts (the others by plain HSET: `-`); and the client's time a file to read
every directory back as the walk does (`Ledger.dirs`, best of 5, 100 directories a call; a split directory costs a
second round trip and a script).
Layouts:

- `first`: the layout before buckets (one hash a directory, 25-byte done values: `D` size mtime sha256[:8]);
- `first+lp16k`: the same on a server whose `hash-max-listpack-entries` is raised to 16384 (an operator's
  choice, not the product's: every HSET then scans a directory's whole listpack);
- `17B/dir`: 17-byte done values, one hash a directory (only the value shortened);
- `compact`: the shipped layout, written by `Ledger.mark_done` (17-byte values, buckets of <= 128 fields);
- `fp8/buckets`: a candidate, not shipped: an 8-byte fingerprint of size+mtime as the value, same buckets.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from irods_ingestd import keys
from irods_ingestd.ledger import Ledger, done_value, name_field, version_bytes
from irods_ingestd.ledger_lua import REBUILD_FILL
from tests.ledger_v1 import write_v1_done

SHAPES = (100, 1000, 10_000)  # files a directory
ZONE = "lb"
PREFIX = "ingestd"
LAYOUTS = ("first", "first+lp16k", "17B/dir", "compact", "fp8/buckets")


def tree(per_dir: int, total: int) -> list[tuple[str, int, int]]:
    ndirs = max(1, total // per_dir)
    t0 = 1_700_000_000_000_000_000
    return [(f"data/run{d:05d}/f{i:06d}.dat", 1000 + i, t0 + d * per_dir + i)
            for d in range(ndirs) for i in range(per_dir)]


def _flush(pipe: Any, n: int) -> None:
    if n % 5000 == 0:
        pipe.execute()


def write_plain(r: Any, files: list[tuple[str, int, int]], value: Callable[[int, int], bytes]) -> None:
    """One hash a directory, `value(size, mtime)` a file."""
    pipe = r.pipeline(transaction=False)
    for n, (rel, size, mtime) in enumerate(files, 1):
        d, _, name = rel.rpartition("/")
        pipe.hset(keys.dir_key(PREFIX, ZONE, d), name_field(name), value(size, mtime))
        _flush(pipe, n)
    pipe.execute()


def write_buckets(r: Any, files: list[tuple[str, int, int]], value: Callable[[int, int], bytes]) -> None:
    """Buckets as the compact layout lays them out (fewest, power of two, <= REBUILD_FILL each)."""
    by_dir: dict[str, list[tuple[bytes, bytes]]] = {}
    for rel, size, mtime in files:
        d, _, name = rel.rpartition("/")
        by_dir.setdefault(d, []).append((name_field(name), value(size, mtime)))
    pipe = r.pipeline(transaction=False)
    for d, fv in by_dir.items():
        base = keys.dir_key(PREFIX, ZONE, d)
        if len(fv) <= 128:
            pipe.hset(base, mapping=dict(fv))
            continue
        n = 2
        while True:
            counts: dict[int, int] = {}
            for f, _ in fv:
                b = int.from_bytes(f[:3], "big") % n
                counts[b] = counts.get(b, 0) + 1
            if max(counts.values()) <= REBUILD_FILL:
                break
            n *= 2
        pipe.hset(base, b"", n)
        per: dict[int, dict[bytes, bytes]] = {}
        for f, v in fv:
            per.setdefault(int.from_bytes(f[:3], "big") % n, {})[f] = v
        for b, m in per.items():
            pipe.hset(f"{base}.{b}", mapping=m)
        pipe.execute()
    pipe.execute()


def write_compact(r: Any, files: list[tuple[str, int, int]], zone: str = ZONE) -> None:
    """mark_done's script (the result script) over a pipeline, as a worker's mark_done runs it."""
    led = Ledger(r, PREFIX)
    pipe = r.pipeline(transaction=False)
    for n, (rel, size, mtime) in enumerate(files, 1):
        d, _, name = rel.rpartition("/")
        led._result(keys=led._keys(zone, d), client=pipe,
                    args=[name_field(name), done_value(size, mtime), version_bytes(size, mtime), "done", size, "0"])
        _flush(pipe, n)
    pipe.execute()


def fp8(size: int, mtime: int) -> bytes:
    return hashlib.blake2b(b"%d\0%d" % (size, mtime), digest_size=8).digest()


def write_layout(r: Any, layout: str, files: list[tuple[str, int, int]]) -> None:
    if layout in ("first", "first+lp16k"):
        write_v1_done(r, ZONE, files, PREFIX)
    elif layout == "17B/dir":
        write_plain(r, files, done_value)
    elif layout == "compact":
        write_compact(r, files)
    elif layout == "fp8/buckets":
        write_buckets(r, files, fp8)
    else:
        raise ValueError(layout)


def measure(work: Path, layout: str, per_dir: int, total: int) -> dict[str, Any]:
    """Write one layout at one shape into a redis-server of its own; bytes a file and a directory."""
    from tests.redis_harness import RedisServerProcess

    srv = RedisServerProcess(work / f"ledger-bytes-{os.getpid()}")
    srv.start()
    try:
        return _measure(srv.client(), layout, per_dir, total)
    finally:
        srv.stop()


def _measure(r: Any, layout: str, per_dir: int, total: int) -> dict[str, Any]:
    files = tree(per_dir, total)
    if layout == "first+lp16k":
        r.config_set("hash-max-listpack-entries", 16384)
    r.ping()
    base = int(r.info("memory")["used_memory"])
    r.config_resetstat()
    write_layout(r, layout, files)
    script = r.info("commandstats").get("cmdstat_evalsha", {}).get("usec_per_call")
    time.sleep(2.5)  # the server shrinks an idle client's query buffer (the last pipeline's) after 2 s
    used = int(r.info("memory")["used_memory"]) - base
    read = read_all(r, files)
    ks = [k for k in r.scan_iter(match=keys.dir_pattern(PREFIX, ZONE), count=1000)]
    pipe = r.pipeline(transaction=False)
    for k in ks:
        pipe.memory_usage(k, samples=0)
    mu = sum(int(x or 0) for x in pipe.execute())
    pipe = r.pipeline(transaction=False)
    for k in ks:
        pipe.object("encoding", k)
    enc = sorted({e.decode() if isinstance(e, bytes) else str(e) for e in pipe.execute()})
    ndirs = len(files) // per_dir
    return {"layout": layout, "per_dir": per_dir, "files": len(files), "keys": len(ks),
            "mu_file": mu / len(files), "used_file": used / len(files), "mu_dir": mu / ndirs,
            "encodings": "+".join(enc), "script_us": script,
            "read_us": read / len(files) * 1e6}


def read_all(r: Any, files: list[tuple[str, int, int]]) -> float:
    """Seconds the walk's read of every directory takes (Ledger.dirs, 100 directories a call), best of 5."""
    led = Ledger(r, PREFIX)
    dirs = sorted({rel.rpartition("/")[0] for rel, _, _ in files})
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        n = 0
        for i in range(0, len(dirs), 100):
            n += sum(len(h) for h in led.dirs(ZONE, dirs[i:i + 100]))
        best = min(best, time.perf_counter() - t0)
        assert n == len(files), (n, len(files))
    return best


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'layout':<12} {'files/dir':>9} {'files':>7} {'keys':>6} {'MEMORY USAGE B/file':>20} "
            f"{'used_memory B/file':>19} {'B/dir':>9} {'encoding':<18} {'script us/file':>14} {'read us/file':>12}")
    out = [head, "-" * len(head)]
    for x in rows:
        script = "-" if x["script_us"] is None else f"{x['script_us']:.1f}"
        out.append(f"{x['layout']:<12} {x['per_dir']:>9,} {x['files']:>7,} {x['keys']:>6,} {x['mu_file']:>20.1f} "
                   f"{x['used_file']:>19.1f} {x['mu_dir']:>9,.0f} {x['encodings']:<18} {script:>14} "
                   f"{x['read_us']:>12.2f}")
    return "\n".join(out)


def run_all(work: Path, total: int) -> list[dict[str, Any]]:
    return [measure(work, layout, per_dir, max(total, per_dir)) for per_dir in SHAPES for layout in LAYOUTS]


def server_line(work: Path) -> str:
    from tests.redis_harness import RedisServerProcess

    srv = RedisServerProcess(work / f"ledger-bytes-{os.getpid()}")
    srv.start()
    try:
        r = srv.client()
        get = r.config_get
        return (f"redis {r.info('server')['redis_version']} ({os.uname().machine}), a fresh server a layout; "
                f"its hash-max-listpack-entries {get('hash-max-listpack-entries')['hash-max-listpack-entries']}, "
                f"-value {get('hash-max-listpack-value')['hash-max-listpack-value']}")
    finally:
        srv.stop()


def split_costs(work: Path, sizes: tuple[int, ...] = (10_000, 100_000)) -> list[str]:
    """Redis time of the compact layout's one-off work on a first-layout ledger: one directory of n entries
    split when a new file enters it (one mark_done timed), and a recount of 200 directories of 1,000 entries
    (the first compacts them, the second only counts): server µs from INFO commandstats."""
    from irods_ingestd.recount import Recount
    from tests.redis_harness import RedisServerProcess

    srv = RedisServerProcess(work / f"ledger-split-{os.getpid()}")
    srv.start()
    out = []
    try:
        r = srv.client()
        led = Ledger(r, PREFIX)
        for n in sizes:
            r.flushall()
            write_v1_done(r, ZONE, [(f"big/f{i:07d}", 1, 2) for i in range(n)], PREFIX)
            led.get(ZONE, "big/f0000001")  # the scripts loaded
            t0 = time.perf_counter()
            led.mark_done(ZONE, "big/new", 1, 2, b"")
            out.append(f"first-layout directory of {n:,} entries split by one new file: "
                       f"{(time.perf_counter() - t0) * 1000:.1f} ms")
        r.flushall()
        write_v1_done(r, ZONE, [(f"d{d:03d}/f{i:04d}", 1, 2) for d in range(200) for i in range(1000)], PREFIX)
        for what in ("compacts", "counts"):
            r.config_resetstat()
            Recount(led, [ZONE]).run()
            st = r.info("commandstats")["cmdstat_evalsha"]
            out.append(f"recount of 200 x 1,000 entries ({what}): {st['usec'] / 1000:.0f} ms of Redis in "
                       f"{st['calls']} scripts, {st['usec_per_call'] / 1000:.1f} ms a script on average")
    finally:
        srv.stop()
    return out


def run(svc: Any, work: Path, res: Any, quick: bool) -> None:
    print("  " + server_line(work), flush=True)
    rows = run_all(work, 20_000 if quick else 100_000)
    print(table(rows), flush=True)
    for line in split_costs(work):
        print("  " + line, flush=True)
    by = {(x["layout"], x["per_dir"]): x for x in rows}
    for per_dir in SHAPES:
        first, comp = by[("first", per_dir)], by[("compact", per_dir)]
        res.add("ledger", f"Redis bytes a done file, {per_dir:,}/dir: first layout -> compact (MEMORY USAGE)",
                f"{first['mu_file']:.1f} -> {comp['mu_file']:.1f} B", "compact < first",
                comp["mu_file"] < first["mu_file"])


def main(argv: list[str] | None = None) -> int:
    """Standalone: redis-servers of its own (the tests' helper), measure, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000, help="files a layout and shape (default 100000)")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ledger-bytes-") as tmp:
        print(server_line(Path(tmp)), flush=True)
        print(table(run_all(Path(tmp), a.files)))
        for line in split_costs(Path(tmp)):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
