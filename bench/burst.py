"""Burst: 100,000 files created as fast as a separate writer process can, into a zone the running daemon
watches (kernel default inotify queue, 16384 events; no workers). Every file must be queued exactly once
(the files of every job in the RQ queue are counted); the writer's speed watched vs unwatched (three
watched runs alternate with four unwatched ones, as the machine is shared and noisy: medians compared).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from rq import Queue
from rq.job import Job

from irods_ingestd.job import Batch
from irods_ingestd.ledger import Ledger

from .common import (
    PY,
    ROOT,
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

QUEUE = "bench-burst"
PAIRS = 3


def _secs(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}s" for x in xs)


def writer(target: Path, ndirs: int, per_dir: int) -> float:
    # the ext4 journal is still busy with the last rm -rf (and its discards) for a while: a writer run
    # started right after one was up to 8x slower here; settle the file system before timing
    os.sync()
    time.sleep(1.0)
    out = subprocess.run([PY, "-m", "bench.writer", str(target), str(ndirs), str(per_dir)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout)["seconds"])


def queued_files(r: object) -> list[str]:
    q = Queue(QUEUE, connection=r)  # type: ignore[arg-type]
    ids = q.get_job_ids()
    rels: list[str] = []
    for i in range(0, len(ids), 500):
        for job in Job.fetch_many(ids[i:i + 500], connection=r):  # type: ignore[arg-type]
            if job is not None:
                rels += [f.rel for f in Batch.from_record(job.args[0]).files]
    return rels


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    ndirs, per_dir = (10, 1000) if quick else (100, 1000)
    n = ndirs * per_dir
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        qlen = f.read().strip()
    # On this machine's disk (ext4, mounted with discard) a run right after a large `rm -rf` is up to 8x
    # slower whatever watches it, which swamped the comparison; so nothing is removed between runs, and
    # the files go to tmpfs where there is one: the writer is then as fast as it can be, and the daemon's
    # cost shows fully in the ratio.
    base = work
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and _is_tmpfs(shm):
        base = Path(tempfile.mkdtemp(prefix="ingestd-burst-", dir=shm))
    print(f"  burst files under {base}")
    free = base / "burst-free"
    zone = base / "burst-zone"
    zone.mkdir(parents=True, exist_ok=True)
    svc.flush_redis()
    r = svc.redis.client()
    cfg = write_config(work / "burst.toml", svc, [{"name": "burst", "path": str(zone), "collection":
                       f"{svc.home}/burst", "settle": "0.2s", "rescan": "1h"}], queue=QUEUE,
                       max_backlog=PAIRS * n + 1000)  # no workers: the default backlog bound (200,000) would stop
                                                      # the daemon queueing (by design) in the third run
    log = work / "burst.log"
    led = Ledger(r)
    t_free: list[float] = []
    t_watched: list[float] = []
    t_queued: list[float] = []
    want: set[str] = set()
    status: dict = {}

    def unwatched(k: int) -> None:
        t_free.append(writer(free / f"r{k}", ndirs, per_dir))

    # unwatched and watched runs alternate (the machine is shared and noisy); medians are compared
    for k in range(PAIRS):
        unwatched(k)
        clear_daemon_status(r)  # the previous daemon's status must not be read as this one's
        with Procs() as procs:
            dpid = procs.ingestd(cfg, log, "run").pid
            if not wait_until(lambda p=dpid: zone_walked(r, "burst", p), 30):
                res.fail("burst", f"{n} files", f"daemon did not come up (see {log})")
                return
            before = led.stats("burst")["queued"]
            t0 = time.monotonic()
            t_watched.append(writer(zone / f"run{k}", ndirs, per_dir))
            want |= {f"run{k}/d{d:04d}/w{i:06d}.dat" for d in range(ndirs) for i in range(per_dir)}
            # wait until the daemon queued everything (or stopped making progress for 15 s)
            last, since = -1, time.monotonic()
            while time.monotonic() - since < 15:
                q = led.stats("burst")["queued"] - before
                if q >= n:
                    break
                if q != last:
                    last, since = q, time.monotonic()
                time.sleep(0.05)
            t_queued.append(time.monotonic() - t0)
            time.sleep(1.5)  # anything queued twice would show up now
            status = daemon_status(r, dpid) or {}
    unwatched(PAIRS)
    stats = led.stats("burst")
    rels = queued_files(r)
    counts = Counter(rels)
    dup = sum(c - 1 for c in counts.values() if c > 1)
    missing = len(want - counts.keys())
    extra = len(counts.keys() - want)
    print(f"  inotify max_queued_events {qlen}; daemon overflows {status.get('overflows')}; load {loadavg()}")
    exact = dup == 0 and missing == 0 and extra == 0
    res.add("burst", f"{PAIRS}x{n} files queued exactly once",
            f"{len(counts)} distinct in {len(rels)} queued ({dup} dup, {missing} missing, {extra} extra; "
            f"ledger queued {stats['queued']}; overflows {status.get('overflows')})", "100%", exact)
    free_s, watched_s = statistics.median(t_free), statistics.median(t_watched)
    res.add("burst", "writer unwatched", f"{n / free_s:.0f} files/s (median; runs {_secs(t_free)})")
    res.add("burst", "writer watched by the daemon", f"{n / watched_s:.0f} files/s (median; runs {_secs(t_watched)})")
    res.add("burst", "writer watched/unwatched", f"{free_s / watched_s:.2f}x", ">=0.8x", free_s / watched_s >= 0.8)
    tq = statistics.median(t_queued)
    res.add("burst", "all queued, from writer start",
            f"{tq:.1f}s median ({n / tq:.0f} files/s; runs {_secs(t_queued)})")
    subprocess.run(["rm", "-rf", str(zone), str(free)], check=False)
    if base != work:
        subprocess.run(["rm", "-rf", str(base)], check=False)
    svc.flush_redis()


def _is_tmpfs(path: Path) -> bool:
    try:
        with open("/proc/mounts") as f:
            return any(line.split()[1] == str(path) and line.split()[2] == "tmpfs" for line in f)
    except OSError:
        return False
