"""Latency: files of 4 KiB closed at a steady 100 a second for ~10 s (a separate writer process, which
records time.time() after each close) into a zone watched by the daemon with 4 workers, settle 0.2 s.

- close → job start: RQ's `started_at` of the job that carried the file (finished jobs are kept 600 s);
- close → in iRODS: the first time the bench sees the file's ledger entry `D` (done is recorded after the
  copy is verified and renamed onto its final name), polling the ledger hashes of the directories still
  pending every 10 ms (so ±10 ms of resolution).
Both minus the settle time; p50 and p99. The objects are counted in iRODS at the end.
"""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from rq.job import Job
from rq.registry import FinishedJobRegistry

from irods_ingestd.ledger import DONE, Ledger, name_field, unpack

from .common import (
    PY,
    ROOT,
    Procs,
    Results,
    Services,
    clear_daemon_status,
    loadavg,
    pct,
    wait_until,
    wait_workers,
    write_config,
    zone_walked,
)

QUEUE = "bench-latency"
SETTLE = 0.2
RATE = 100.0
WORKERS = 4


def _ts(dt: datetime) -> float:
    return dt.replace(tzinfo=UTC).timestamp() if dt.tzinfo is None else dt.timestamp()


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    ndirs, per_dir = (3, 100) if quick else (10, 100)
    n = ndirs * per_dir
    zone = work / "latency-zone"
    zone.mkdir(parents=True, exist_ok=True)
    svc.flush_redis()
    r = svc.redis.client()
    led = Ledger(r)
    coll = f"{svc.home}/bench-latency-{int(time.time())}"
    cfg = write_config(work / "latency.toml", svc, [{"name": "lat", "path": str(zone), "collection": coll,
                       "settle": f"{SETTLE}s", "rescan": "1h"}], queue=QUEUE)
    log = work / "latency.log"
    times_file = work / "latency-times.txt"
    names = {d: {name_field(f"w{i:06d}.dat"): f"run/d{d:04d}/w{i:06d}.dat" for i in range(per_dir)}
             for d in range(ndirs)}
    done_at: dict[str, float] = {}
    clear_daemon_status(r)
    with Procs() as procs:
        dpid = procs.ingestd(cfg, log, "run").pid
        for i in range(WORKERS):
            procs.ingestd(cfg, log, "worker", "--name", f"lat-{i}")
        if not wait_workers(r, WORKERS) or not wait_until(lambda: zone_walked(r, "lat", dpid), 30):
            res.fail("latency", f"{n} files", f"daemon/workers did not come up (see {log})")
            return
        print(f"  writing {n} files at {RATE:.0f}/s; load {loadavg()}", flush=True)
        wp = subprocess.Popen([PY, "-m", "bench.writer", str(zone / "run"), str(ndirs), str(per_dir), "--size",
                               "4096", "--rate", str(RATE), "--times", str(times_file)], cwd=ROOT,
                              stdout=subprocess.DEVNULL)
        pending = set(range(ndirs))
        deadline = time.monotonic() + n / RATE + 60
        while pending and time.monotonic() < deadline:
            dirs = sorted(pending)[:3]  # the writer fills one directory at a time
            hashes = led.dirs("lat", [f"run/d{d:04d}" for d in dirs])  # split directories read whole
            now = time.time()
            for d, h in zip(dirs, hashes, strict=True):
                for field, value in h.items():
                    rel = names[d].get(field)
                    if rel and unpack(value).state == DONE and rel not in done_at:
                        done_at[rel] = now
                if all(rel in done_at for rel in names[d].values()):
                    pending.discard(d)
            time.sleep(0.01)
        wp.wait(60)
        started: dict[str, float] = {}
        enqueued: dict[str, float] = {}
        reg = FinishedJobRegistry(QUEUE, connection=r)
        for job in Job.fetch_many(reg.get_job_ids(), connection=r):
            if job is None or job.started_at is None or job.enqueued_at is None:
                continue
            t, te = _ts(job.started_at), _ts(job.enqueued_at)
            for rel, _size, _mtime in job.args[0]["files"]:
                started[rel] = min(t, started.get(rel, t))
                enqueued[rel] = min(te, enqueued.get(rel, te))
    closed = {}
    for line in times_file.read_text().split("\n"):
        if line:
            rel, when = line.split()
            closed[f"run/{rel}"] = float(when)
    got, _, _ = svc.count_objects(f"{coll}/run")
    if len(done_at) < n or got < n:
        res.fail("latency", f"{n} files at {RATE:.0f}/s", f"only {len(done_at)} done in the ledger, {got} objects "
                 f"in iRODS (see {log})")
        return
    to_start = [(started[rel] - closed[rel] - SETTLE) * 1000 for rel in closed if rel in started]
    to_queue = [(enqueued[rel] - closed[rel] - SETTLE) * 1000 for rel in closed if rel in enqueued]
    to_done = [(done_at[rel] - closed[rel] - SETTLE) * 1000 for rel in closed]
    print(f"  load {loadavg()}; {len(to_start)} of {n} files with a job start time")
    res.add("latency", f"close→job start - settle, {n} files @{RATE:.0f}/s",
            f"p50 {pct(to_start, 50):.0f} ms, p99 {pct(to_start, 99):.0f} ms", "p50<=20ms", pct(to_start, 50) <= 20)
    res.add("latency", "  of which close→enqueued - settle (daemon)",
            f"p50 {pct(to_queue, 50):.0f} ms, p99 {pct(to_queue, 99):.0f} ms")
    res.add("latency", "close→in iRODS - settle",
            f"p50 {pct(to_done, 50):.0f} ms, p99 {pct(to_done, 99):.0f} ms", "p50<=250ms", pct(to_done, 50) <= 250)
    svc.remove_collection(coll)
    subprocess.run(["rm", "-rf", str(zone)], check=False)
