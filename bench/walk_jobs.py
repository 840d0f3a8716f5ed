"""Walk jobs: an onboarding walk (a tree the ledger does not know) by one walker, and as walk jobs.

The tree is empty files in flat directories (10,000 of 100 = 1,000,000 files; `--quick` 2,000 of 100), made
with bench/walk.py's tree maker in the work directory (the disk, warm page cache). Both sides run the
daemon's code for a zone's full walk and hand every file found to the zone's settle policy
(`Zone.take_found`) and a sink that counts: the queueing that follows is the same for both and is measured
by `throughput`.

- one walker: `Zone.walk_step` in this process until the walk ends (walk_dir + one ledger pipeline per 64
  directories), as the daemon walks a zone today;
- walk jobs: the same walk with `[walk] jobs = true` and 1, 2 and 4 walk worker processes (`irods-ingestd
  worker --role walk`) on this machine; this process is the daemon's scheduler (`WalkJobs.step`): it drains
  the results, makes the subdirectories new chunks, and ends the walk when no chunk is outstanding.

Two trees: an onboarding walk (the ledger is empty: every file is handed to the daemon) and a rescan of a
known tree (the ledger holds every file: nothing is). Each file must be found exactly once on each side
(counted); the two sides run alternately, 3 times each per number of workers; printed: the medians of the
wall time from the walk's start to its end, with files/s, the median of the speed-ups over the one-walker run
just before each (the machine is shared: the pairs see the same load), and the daemon's CPU time as a share
of the walk's (its serial part: the results drained, the files handed to the settle policy).
WALKJOBS_FILES (environment) overrides the size (e.g. 200000).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import time
from pathlib import Path

import redis
from rq import Queue, Worker

from irods_ingestd.config import load
from irods_ingestd.filters import NameFilter
from irods_ingestd.reconcile import Reconciler, Walk
from irods_ingestd.walk_sched import WalkJobs
from irods_ingestd.walker import walk_dir
from irods_ingestd.watch.poll import PollWatcher
from irods_ingestd.zone import NullSink, Zone

from .common import (
    PY,
    ZONE_PREFIX,
    Procs,
    Results,
    Services,
    list_tree,
    loadavg,
    make_empty_tree,
    mark_done_pipelined,
    wait_until,
    write_config,
)

WORKERS = (1, 2, 4)
RUNS = 3


class CountingSink(NullSink):
    """A ZoneSink that counts what a walk hands on (and how often each file: must be once)."""

    def __init__(self) -> None:
        self.ready = 0
        self.observed = 0
        self.skipped = 0

    def observe(self, zone: str, rel: str, size: int, mtime_ns: int, settle: float) -> None:
        self.observed += 1

    def ready_file(self, zone: str, rel: str, size: int, mtime_ns: int) -> None:
        self.ready += 1

    def report_skip(self, zone: str, rel: str, reason: str) -> None:
        self.skipped += 1

    @property
    def found(self) -> int:
        return self.ready + self.observed


def one_walker(zs: Zone, rec: Reconciler) -> tuple[float, int, Walk]:
    sink = CountingSink()
    walk = zs.walk = Walk()
    t0 = time.perf_counter()
    while zs.walk is not None:
        zs.walk_step(rec, sink, budget=1.0)
    return time.perf_counter() - t0, sink.found, walk


def as_jobs(zs: Zone, jobs: WalkJobs) -> tuple[float, int, Walk, set[str], float]:
    """The walk as jobs; also the CPU seconds of this process (the daemon's share: scheduling, results)."""
    sink = CountingSink()
    walk = zs.walk = Walk()
    t0, c0 = time.perf_counter(), time.process_time()
    while zs.walk is not None:
        assert jobs.runs_as_jobs(zs), "the walk did not run as jobs"
        jobs.step(zs, sink, budget=0.05)
    return time.perf_counter() - t0, sink.found, walk, jobs.finished[zs.name].hosts, time.process_time() - c0


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    want = int(os.environ.get("WALKJOBS_FILES", 0)) or (200_000 if quick else 1_000_000)
    per_dir = 100
    ndirs = want // per_dir
    root = work / "walkjobs-zone"
    t0 = time.monotonic()
    n = make_empty_tree(root, ndirs, per_dir)
    print(f"  {n} empty files in {ndirs} directories created in {time.monotonic() - t0:.1f}s (on {work}: "
          f"{_fs_of(work)}; cores {os.cpu_count()})", flush=True)
    svc.flush_redis()
    cfg_path = write_config(work / "walkjobs.toml", svc, [{"name": "wj", "path": str(root),
                                                             "collection": f"{svc.home}/wj", "watcher": "poll"}],
                            queue="bench-wj", log_level="warning")
    with open(cfg_path, "a") as f:
        f.write("\n[walk]\njobs = true\n")
    r: redis.Redis = svc.redis.client()
    subprocess.run(["find", str(root), "-type", "f"], stdout=subprocess.DEVNULL, check=True)  # warm the cache
    spare_cores(res, root, cfg_path)
    if compare(svc, work, res, cfg_path, n, n, "onboarding walk"):
        t0 = time.monotonic()
        mark_done_pipelined(r, "wj", list_tree(root))
        print(f"  ledger filled with the {n} files in {time.monotonic() - t0:.1f}s", flush=True)
        compare(svc, work, res, cfg_path, n, 0, "rescan of a known tree")
    subprocess.run(["rm", "-rf", str(root)], check=False)
    svc.flush_redis()


def compare(svc: Services, work: Path, res: Results, cfg_path: Path, n: int, new: int, what: str) -> bool:
    """One walker and the walk as jobs with 1, 2, 4 walk worker processes, alternately (RUNS times each, so
    both sides see the same load), medians; False if a walk found the wrong count."""
    cfg = load(cfg_path)
    r = svc.redis.client()
    zs = Zone(cfg=cfg.zones[0], watcher=PollWatcher())
    zs.state = "polling"
    rec = Reconciler(_ledger(r))
    ones: list[float] = []
    by_k: dict[int, tuple[float, float, float]] = {}  # median seconds, median paired ratio, daemon CPU share
    for k in WORKERS:
        with Procs() as procs:
            for i in range(k):
                procs.start([PY, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg_path), "worker",
                             "--role", "walk", "--hostname", f"bench-{i}", "--name", f"bench-walk-{k}-{i}"],
                            work / f"walk-worker-{k}-{i}.log")
            q = Queue(cfg.walk.queue, connection=r)
            if not wait_until(lambda: Worker.count(connection=r, queue=q) >= k, 30):  # noqa: B023
                res.fail("walk_jobs", f"{k} walk workers", "workers did not start")
                return False
            times, ratios, cpus = [], [], []
            for _ in range(RUNS):
                secs1, found1, walk1 = one_walker(zs, rec)
                if found1 != new or walk1.files != n:
                    res.fail("walk_jobs", f"{what}, one walker",
                             f"found {found1}, walked {walk1.files} (want {new}, {n})")
                    return False
                ones.append(secs1)
                secs, found, walk, hosts, cpu = as_jobs(zs, WalkJobs(r, cfg.redis.prefix, cfg.walk))
                if found != new or walk.files != n:
                    res.fail("walk_jobs", f"{what}, {k} walk workers", f"found {found}, walked {walk.files} files "
                             f"(want {new}, {n})")
                    return False
                times.append(secs)
                ratios.append(secs1 / secs)
                cpus.append(cpu / secs)
                print(f"  {what}: one walker {secs1:.2f}s; {k} walk workers ({len(hosts)} took chunks) {secs:.2f}s, "
                      f"daemon CPU {cpu:.2f}s (load {loadavg()})", flush=True)
        by_k[k] = (statistics.median(times), statistics.median(ratios), statistics.median(cpus))
    one = statistics.median(ones)
    res.add("walk_jobs", f"{what}, {n} files, one walker",
            f"{n / one / 1e3:.0f}k files/s ({one:.2f}s, median of {len(ones)})")
    for k, (secs, ratio, cpu_share) in by_k.items():
        res.add("walk_jobs", f"{what}, {n} files, {k} walk workers",
                f"{n / secs / 1e3:.0f}k files/s ({secs:.2f}s, median of {RUNS}) = {ratio:.2f}x one walker run "
                f"beside it; daemon CPU {cpu_share:.0%} of the time")
    return True


def _list_part(args: tuple[str, list[str], NameFilter]) -> int:
    root, dirs, names = args
    return sum(len(walk_dir(root, d, names).files) for d in dirs)


def spare_cores(res: Results, root: Path, cfg_path: Path) -> None:
    """What the machine gives in parallel right now: the tree's directories listed by walk_dir in 1, 2 and
    4 processes (no Redis, no RQ, no daemon): about the most walk jobs could gain at this moment."""
    names = NameFilter.for_zone(load(cfg_path).zones[0])
    dirs = sorted(os.listdir(root))
    times = {}
    for k in WORKERS:
        t0 = time.perf_counter()
        with multiprocessing.Pool(k) as pool:
            pool.map(_list_part, [(str(root), dirs[i::k], names) for i in range(k)])
        times[k] = time.perf_counter() - t0
    print(f"  walk_dir alone in 1, 2, 4 processes: {', '.join(f'{t:.2f}s' for t in times.values())} "
          f"(load {loadavg()})", flush=True)
    res.add("walk_jobs", "walk_dir alone, 4 processes vs 1 (the spare cores now)", f"{times[1] / times[4]:.2f}x")


def _ledger(r: redis.Redis):  # noqa: ANN202 - the ledger the daemon would use
    from irods_ingestd.ledger import Ledger

    return Ledger(r, ZONE_PREFIX)


def _fs_of(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype,source", str(path)], capture_output=True, text=True).stdout.split()
    return " ".join(out[2:4]) if len(out) >= 4 else "?"
