"""Memory: the daemon's peak RSS after its first full walk of a zone of 100,000 and of 1,000,000 files
already ingested (empty files, 1,000 a directory; the ledger filled with Ledger.mark_done over a Redis
pipeline), and Redis's memory per ingested file (INFO used_memory delta / files).

The daemon is `irods-ingestd run` (inotify zone, so one watch per directory); its VmHWM is read from
/proc once its status says the first walk is done. The 1M tree extends the 100k one.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .common import (
    Procs,
    Results,
    Services,
    clear_daemon_status,
    daemon_status,
    loadavg,
    make_empty_tree,
    mark_done_pipelined,
    vm,
    wait_until,
    write_config,
    zone_walked,
)

PER_DIR = 1000


def used_memory(r: object) -> int:
    return int(r.info("memory")["used_memory"])  # type: ignore[attr-defined]


def files_of(root: Path, first_dir: int, ndirs: int) -> list[tuple[str, int, int]]:
    out = []
    for d in range(first_dir, ndirs):
        rd = f"d{d:04d}"
        with os.scandir(root / rd) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                out.append((f"{rd}/{e.name}", st.st_size, st.st_mtime_ns))
    return out


def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    sizes = [10_000, 100_000] if quick else [100_000, 1_000_000]
    root = work / "mem-zone"
    root.mkdir(parents=True, exist_ok=True)
    svc.flush_redis()
    r = svc.redis.client()
    base_mem = used_memory(r)
    made = 0
    rss: dict[int, int] = {}
    cfg = write_config(work / "memory.toml", svc, [{"name": "mem", "path": str(root), "collection":
                       f"{svc.home}/mem", "settle": "1s", "rescan": "1h"}], queue="bench-memory")
    for n in sizes:
        t0 = time.monotonic()
        ndirs = n // PER_DIR
        first = made // PER_DIR
        make_empty_tree(root, ndirs, PER_DIR)  # the existing directories are opened again, cheaply
        t1 = time.monotonic()
        mark_done_pipelined(r, "mem", files_of(root, first, ndirs))
        made = n
        mem = used_memory(r) - base_mem
        print(f"  {n} files: tree {t1 - t0:.0f}s, ledger {time.monotonic() - t1:.0f}s; load {loadavg()}",
              flush=True)
        res.add("memory", f"Redis per ingested file ({n} in ledger, {PER_DIR}/dir)", f"{mem / n:.0f} bytes",
                "<150 B", mem / n < 150)
        log = work / "memory.log"
        clear_daemon_status(r)  # the previous daemon's status must not be read as this one's
        with Procs() as procs:
            d = procs.ingestd(cfg, log, "run")
            t2 = time.monotonic()
            ok = wait_until(lambda p=d.pid: zone_walked(r, "mem", p), 600, 0.2)
            if not ok or d.poll() is not None:
                res.fail("memory", f"daemon RSS, {n} files", f"the first walk did not finish (see {log})")
                return
            st = daemon_status(r, d.pid) or {}
            hwm, cur = vm(d.pid, "VmHWM"), vm(d.pid, "VmRSS")
            rss[n] = hwm
            res.add("memory", f"daemon peak RSS after walking {n} files",
                    f"VmHWM {hwm / 2**20:.1f} MiB, VmRSS {cur / 2**20:.1f} MiB (walk "
                    f"{st['zones']['mem']['last_walk_seconds']:.1f}s; up {time.monotonic() - t2:.1f}s)")
    if len(rss) == 2:
        a, b = rss[sizes[0]], rss[sizes[1]]
        res.add("memory", f"daemon RSS {sizes[1] // 1000}k vs {sizes[0] // 1000}k", f"{(b - a) / a * 100:+.1f}%",
                "within 10%", abs(b - a) / a <= 0.10)
    subprocess.run(["rm", "-rf", str(root)], check=False)
    svc.flush_redis()
