"""fanotify vs inotify under the same burst, in one run (issue 16.1).

For each backend in turn, a daemon (`bench/watch_counter.py`: `irods-ingestd run` counting the kernel
events its watcher reads) watches one zone (`watcher = "inotify"` or `"fanotify"`, settle 0.2 s, rescan 1 h,
no workers, the kernels' default queues) and a separate writer process (`bench/writer.py`) creates:

1. N files *outside* the zone on the same filesystem (foreign events: a fanotify filesystem mark sees them,
   inotify does not): the daemon's CPU over its idle CPU, per foreign event, and nothing may be queued;
2. N files (directories of 1,000) in the zone, as fast as it can: files/s until the ledger counts every
   file queued, the events read, overflows (daemon status), and whether every file is in exactly one
   queued RQ job.

On tmpfs (`/dev/shm`) where fanotify can mark it (Linux 6.6 or later), else in the work directory.
`python -m bench.run --only fanotify_burst --files N` (default 100,000; --quick 20,000).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rq import Queue
from rq.job import Job

from irods_ingestd.job import Batch
from irods_ingestd.ledger import Ledger

from .burst import _is_tmpfs, writer
from .common import (
    PY,
    Procs,
    Results,
    Services,
    clear_daemon_status,
    daemon_status,
    loadavg,
    wait_until,
    write_config,
    zone_walked,
)

BACKENDS = ("inotify", "fanotify")


def queued_files(r: Any, queue: str) -> list[str]:
    q = Queue(queue, connection=r)
    ids = q.get_job_ids()
    rels: list[str] = []
    for i in range(0, len(ids), 500):
        for job in Job.fetch_many(ids[i:i + 500], connection=r):
            if job is not None:
                rels += [f.rel for f in Batch.from_record(job.args[0]).files]
    return rels


def _stats(path: Path) -> dict[str, float]:
    for _ in range(50):
        try:
            return json.loads(path.read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            time.sleep(0.05)
    return {"events": 0, "cpu": 0.0}


def _base(work: Path) -> Path:
    from irods_ingestd.watch.fanotify_sys import unavailable

    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and _is_tmpfs(shm) and unavailable(str(shm)) is None:
        return Path(tempfile.mkdtemp(prefix="ingestd-fanburst-", dir=shm))
    return work


def one(svc: Services, work: Path, base: Path, backend: str, ndirs: int, per_dir: int) -> dict[str, Any]:
    n = ndirs * per_dir
    zone, foreign = base / f"{backend}-zone", base / f"{backend}-foreign"
    zone.mkdir(parents=True, exist_ok=True)
    queue = f"bench-fanburst-{backend}"
    svc.flush_redis()
    r = svc.redis.client()
    cfg = write_config(work / f"fanburst-{backend}.toml", svc, [{
        "name": "burst", "path": str(zone), "collection": f"{svc.home}/burst", "settle": "0.2s", "rescan": "1h",
        "watcher": backend}], queue=queue, max_backlog=n + 1000)
    log, stats = work / f"fanburst-{backend}.log", work / f"fanburst-{backend}.stats"
    led = Ledger(r)
    out: dict[str, Any] = {"backend": backend, "files": n}
    clear_daemon_status(r)
    with Procs() as procs:
        pid = procs.start([PY, "-m", "bench.watch_counter", str(cfg), str(stats)], log).pid
        if not wait_until(lambda: zone_walked(r, "burst", pid), 30):
            out["error"] = f"daemon did not come up (see {log})"
            return out
        status = daemon_status(r, pid) or {}
        out["watcher"] = ((status.get("zones") or {}).get("burst") or {}).get("watcher", backend)
        time.sleep(0.5)
        s0 = _stats(stats)
        time.sleep(2.0)
        s1 = _stats(stats)
        idle_rate = (s1["cpu"] - s0["cpu"]) / 2.0
        t0 = time.monotonic()
        out["foreign_writer_s"] = writer(foreign, ndirs, per_dir)
        time.sleep(1.0)  # the daemon reads and drops what is left
        s2 = _stats(stats)
        wall = time.monotonic() - t0
        out["foreign_events"] = s2["events"] - s1["events"]
        out["foreign_cpu_s"] = max(0.0, s2["cpu"] - s1["cpu"] - idle_rate * wall)
        out["foreign_queued"] = led.stats("burst")["queued"]
        before = led.stats("burst")["queued"]
        t0 = time.monotonic()
        out["writer_s"] = writer(zone / "run", ndirs, per_dir)
        last, since = -1, time.monotonic()
        while time.monotonic() - since < 15:
            q = led.stats("burst")["queued"] - before
            if q >= n:
                break
            if q != last:
                last, since = q, time.monotonic()
            time.sleep(0.05)
        out["queued_s"] = time.monotonic() - t0 - 1.0  # writer() waits 1 s for the filesystem first
        time.sleep(1.5)  # anything queued twice shows up now
        s3 = _stats(stats)
        out["events"] = s3["events"] - s2["events"]
        out["cpu_s"] = s3["cpu"] - s2["cpu"]
        status = daemon_status(r, pid) or {}
        out["overflows"] = status.get("overflows")
    counts = Counter(queued_files(r, queue))
    want = {f"run/d{d:04d}/w{i:06d}.dat" for d in range(ndirs) for i in range(per_dir)}
    out["queued"] = sum(counts.values())
    out["dup"] = sum(c - 1 for c in counts.values() if c > 1)
    out["missing"] = len(want - counts.keys())
    out["extra"] = len(counts.keys() - want)
    subprocess.run(["rm", "-rf", str(zone), str(foreign)], check=False)
    svc.flush_redis()
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| backend | files | writer files/s | all queued, files/s | events read | overflows | queued exactly "
            "once | daemon CPU s (burst) | foreign events | daemon CPU µs / foreign event |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for x in rows:
        if "error" in x:
            lines.append(f"| {x['backend']} | {x['files']} | {x['error']} |")
            continue
        once = "yes" if x["dup"] == x["missing"] == x["extra"] == 0 else \
            f"no ({x['dup']} dup, {x['missing']} missing, {x['extra']} extra)"
        per = f"{x['foreign_cpu_s'] / x['foreign_events'] * 1e6:.1f}" if x["foreign_events"] else "–"
        lines.append(f"| {x['backend']} | {x['files']:,} | {x['files'] / x['writer_s']:,.0f} | "
                     f"{x['files'] / x['queued_s']:,.0f} | {x['events']:,} | {x['overflows']} | {once} | "
                     f"{x['cpu_s']:.2f} | {x['foreign_events']:,} | {per} |")
    return "\n".join(lines)


def run(svc: Services, work: Path, res: Results, quick: bool, files: int | None = None) -> None:
    n = files or (20_000 if quick else 100_000)
    per_dir = min(n, 1000)
    ndirs = max(1, n // per_dir)
    base = _base(work)
    queues = []
    for name, path in (("inotify", "/proc/sys/fs/inotify/max_queued_events"),
                       ("fanotify", "/proc/sys/fs/fanotify/max_queued_events")):
        try:
            queues.append(f"{name} {Path(path).read_text().strip()}")
        except OSError:
            pass
    print(f"  files under {base}; kernel queues: {', '.join(queues)}; load {loadavg()}")
    rows = []
    try:
        for backend in BACKENDS:
            x = one(svc, work, base, backend, ndirs, per_dir)
            rows.append(x)
            print(f"  {backend}: {json.dumps(x)}", flush=True)
    finally:
        if base != work:
            subprocess.run(["rm", "-rf", str(base)], check=False)
    print(table(rows))
    for x in rows:
        b = x["backend"]
        if "error" in x:
            res.fail("fanotify_burst", b, x["error"])
            continue
        exact = x["dup"] == x["missing"] == x["extra"] == 0 and x["foreign_queued"] == 0
        res.add("fanotify_burst", f"{b}: {x['files']} files queued exactly once",
                f"{x['queued']} queued ({x['dup']} dup, {x['missing']} missing, {x['extra']} extra; "
                f"overflows {x['overflows']}; events {x['events']})", "100%", exact)
        res.add("fanotify_burst", f"{b}: all queued, from writer start", f"{x['files'] / x['queued_s']:.0f} files/s "
                f"(writer {x['files'] / x['writer_s']:.0f} files/s; daemon CPU {x['cpu_s']:.2f}s)")
        res.add("fanotify_burst", f"{b}: foreign events (outside the zone, same filesystem)",
                f"{x['foreign_events']} read, daemon CPU {x['foreign_cpu_s']:.2f}s over idle")
