"""Walk: one reconcile pass over an unchanged tree already in the ledger, against `find` on the same warm tree.

The tree is empty files (2,000 directories of 100 by default); the ledger is filled with Ledger.mark_done
over a Redis pipeline. The pass is `Reconciler.step` over a `Walk` until done (walk_dir + one HGETALL
pipeline per 64 directories + the comparison), as the daemon runs it, minus the daemon's loop. Each side
runs 3 times after a warm-up; the median is reported. A split (walk_dir alone, no Redis) is shown too.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path

from irods_ingestd.config import validate
from irods_ingestd.filters import NameFilter
from irods_ingestd.ledger import Ledger
from irods_ingestd.reconcile import Reconciler, Walk
from irods_ingestd.walker import walk_dir

from .common import ZONE_PREFIX, Results, Services, list_tree, loadavg, make_empty_tree, mark_done_pipelined

RUNS = 3


def zone_filter(svc: Services, path: Path, name: str) -> NameFilter:
    cfg = validate({"redis": {"url": svc.redis.url}, "irods": {"environment_file": str(svc.env_file)},
                    "zone": [{"name": name, "path": str(path), "collection": f"{svc.home}/x"}]},
                   source="<bench>")
    return NameFilter.for_zone(cfg.zones[0])


def reconcile_pass(led: Ledger, name: str, root: Path, names: NameFilter) -> tuple[float, Walk]:
    rec = Reconciler(led)
    walk = Walk()
    t0 = time.perf_counter()
    new = 0
    while walk.stack:
        found, _ = rec.step(name, str(root), walk, names, False)
        new += len(found)
    return time.perf_counter() - t0, walk


def plain_walk(root: Path, names: NameFilter) -> tuple[float, int]:
    stack, n = [""], 0
    t0 = time.perf_counter()
    while stack:
        lst = walk_dir(str(root), stack.pop(), names)
        stack.extend(lst.subdirs)
        n += len(lst.files)
    return time.perf_counter() - t0, n


def find_pass(root: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["find", str(root), "-type", "f", "-printf", r"%s %T@ %p\n"], stdout=subprocess.DEVNULL,
                   check=True)
    return time.perf_counter() - t0


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    ndirs, per_dir = (200, 100) if quick else (2000, 100)
    root = work / "walk-zone"
    t0 = time.monotonic()
    n = make_empty_tree(root, ndirs, per_dir)
    print(f"  {n} empty files in {ndirs} directories created in {time.monotonic() - t0:.1f}s", flush=True)
    svc.flush_redis()
    r = svc.redis.client()
    t0 = time.monotonic()
    mem0 = int(r.info("memory")["used_memory"])
    mark_done_pipelined(r, "walk", list_tree(root))
    per_file = (int(r.info("memory")["used_memory"]) - mem0) / n
    print(f"  ledger filled (Ledger.mark_done, pipelined) in {time.monotonic() - t0:.1f}s", flush=True)
    led = Ledger(r, ZONE_PREFIX)
    names = zone_filter(svc, root, "walk")
    find_pass(root)  # warm the cache
    reconcile_pass(led, "walk", root, names)
    finds, recs, plains = [], [], []
    for _ in range(RUNS):
        finds.append(find_pass(root))
        secs, walk = reconcile_pass(led, "walk", root, names)
        if walk.files != n or walk.new != 0:
            res.fail("walk", f"reconcile {n} files", f"walk saw {walk.files} files, {walk.new} new (want {n}, 0)")
            return
        recs.append(secs)
        psecs, pn = plain_walk(root, names)
        plains.append(psecs)
    f, rc, p = (statistics.median(x) for x in (finds, recs, plains))
    print(f"  load {loadavg()}")
    res.add("walk", f"find -printf, {n} files", f"{n / f / 1e3:.0f}k files/s ({f:.2f}s, median of {RUNS})")
    res.add("walk", f"reconcile pass, {n} files", f"{n / rc / 1e3:.0f}k files/s ({rc:.2f}s, median of {RUNS})")
    res.add("walk", "  of which walk_dir alone (no Redis)", f"{n / p / 1e3:.0f}k files/s ({p:.2f}s)")
    res.add("walk", "reconcile/find", f"{f / rc:.2f}x", ">=0.5x", f / rc >= 0.5)
    res.add("walk", f"Redis per ingested file ({n} in ledger, {per_dir}/dir)", f"{per_file:.0f} bytes",
            "<150 B", per_file < 150)
    subprocess.run(["rm", "-rf", str(root)], check=False)
    svc.flush_redis()
