"""The walk over the same tree with the ledger in its first and in its compact layout, alternately.

    python -m bench.ledger_walk [--dirs 200] [--per-dir 1000] [--runs 3]

A tree of empty files (on /dev/shm where there is one) is put in the ledger as done, in the first layout
(`tests/ledger_v1.py`: one hash a directory, a hashtable above the server's listpack limit) or in the compact
one (the result script: buckets of at most 128 fields), and walked by `Reconciler.step` passes as the daemon
walks (the same code reads both layouts: a first-layout directory is an unsplit one). Every pass must find
every file known; the median seconds of each layout are printed. Its own redis-server; no iRODS.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

from irods_ingestd.ledger import Ledger
from tests.ledger_v1 import write_v1_done

from . import ledger_bytes
from .common import list_tree, make_empty_tree
from .walk import reconcile_pass, zone_filter

ZONE = "wz"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dirs", type=int, default=200)
    ap.add_argument("--per-dir", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    from tests.redis_harness import RedisServerProcess

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        t = Path(tmp)
        root = t / "zone"
        make_empty_tree(root, a.dirs, a.per_dir)
        files = list_tree(root)
        env = t / "env.json"
        env.write_text('{"irods_host": "127.0.0.1", "irods_port": 1247, "irods_user_name": "rods", '
                       '"irods_zone_name": "tempZone"}')
        srv = RedisServerProcess(t / "redis")
        srv.start()
        try:
            r = srv.client()
            svc = SimpleNamespace(redis=SimpleNamespace(url=srv.url), env_file=env, home="/tempZone/home/rods")
            names = zone_filter(svc, root, ZONE)  # type: ignore[arg-type]
            secs: dict[str, list[float]] = {"first": [], "compact": []}
            for _ in range(a.runs):
                for layout in secs:
                    r.flushall()
                    if layout == "first":
                        write_v1_done(r, ZONE, files)
                    else:
                        ledger_bytes.write_compact(r, files, ZONE)
                    took, walk = reconcile_pass(Ledger(r), ZONE, root, names)
                    if walk.files != len(files):
                        print(f"{layout}: the walk saw {walk.files} of {len(files)} files", file=sys.stderr)
                        return 1
                    secs[layout].append(took)
            print(f"{len(files):,} files, {a.per_dir:,} a directory, {a.runs} passes a layout:")
            for layout, v in secs.items():
                med = statistics.median(v)
                print(f"  {layout:<8} median {med:.2f} s, {len(files) / med / 1000:.0f}k files/s "
                      f"(passes {', '.join(f'{x:.2f}' for x in v)} s)")
        finally:
            srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
