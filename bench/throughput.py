"""Throughput: files from a landing zone into iRODS (put + checksum), four contenders side by side.

- ingestd: `irods-ingestd run` + 4 `irods-ingestd worker`, started and idle on an empty zone; the clock
  starts when the prepared tree is renamed into the zone (one IN_MOVED_TO for the top directory; the
  daemon walks it) and stops when the ledger counts every file done (or failed).
- (a) one process, one session, `data_objects.put(..., regChksum)` file after file (like `iput -K`).
- (b) irods_capability_automated_ingest 0.7.0 (own virtualenv, cached), 4 Celery workers on the same
  Redis (TCP: it cannot use a unix socket), `irods_sync start --synchronous` with a PUT event handler that
  asks for a server checksum (regChksum); the clock covers the `start` command (its walk included).
- (c) the server's ceiling: 4 processes, each its share of the files over its own session, put+regChksum,
  nothing else.
Every contender gets a fresh collection; the objects are counted (GenQuery) after each run.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from .common import (
    Procs,
    Results,
    Services,
    daemon_status,
    list_tree,
    loadavg,
    make_files,
    wait_until,
    wait_workers,
    write_config,
)

AI_VENV = Path(os.environ.get("INGESTD_BENCH_AI_VENV", "/var/cache/irods-ingestd-bench/ai-venv"))
AI_PINS = ["irods-capability-automated-ingest==0.7.0", "redis==4.6.0", "celery[redis]==5.3.6", "kombu==5.3.7"]
WORKERS = 4

EVENT_HANDLER = '''
from irods.keywords import REG_CHKSUM_KW
from irods_capability_automated_ingest.core import Core
from irods_capability_automated_ingest.utils import Operation


class event_handler(Core):
    @staticmethod
    def operation(session, meta, **options):
        return Operation.PUT

    @classmethod
    def on_data_obj_create(cls, func, *args, **options):
        options[REG_CHKSUM_KW] = ""  # a server checksum, like the other contenders
        func(*args, **options)
'''


def ensure_ai_venv() -> Path | None:
    """The automated-ingest virtualenv (created once, cached); None if it cannot be installed."""
    marker = AI_VENV / ".installed"
    if marker.exists():
        return AI_VENV
    print(f"    installing irods_capability_automated_ingest 0.7.0 into {AI_VENV} ...", flush=True)
    AI_VENV.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["python3", "-m", "venv", str(AI_VENV)], check=True)
        subprocess.run([str(AI_VENV / "bin/pip"), "install", "-q", *AI_PINS], check=True,
                       stdout=subprocess.DEVNULL)
    except (subprocess.CalledProcessError, OSError) as e:
        print(f"    automated-ingest could not be installed: {e}")
        return None
    marker.touch()
    return AI_VENV


# -- contenders ----------------------------------------------------------------------------------------
def _put_files(args: tuple[dict[str, Any], list[tuple[str, str]]]) -> int:
    from irods.keywords import REG_CHKSUM_KW
    from irods.session import iRODSSession

    conn, items = args
    with iRODSSession(**conn) as s:
        for local, target in items:
            s.data_objects.put(local, target, **{REG_CHKSUM_KW: ""})
    return len(items)


def _conn(svc: Services) -> dict[str, Any]:
    if svc.real_irods:
        return {**svc.irods.env, "password": svc.irods.password}
    i = svc.irods
    return {"host": i.host, "port": i.port, "user": i.user, "password": i.password, "zone": i.zone}


def _plan(src: Path, coll: str) -> tuple[list[str], list[tuple[str, str]]]:
    files = sorted(list_tree(src))
    dirs = sorted({os.path.dirname(rel) for rel, _, _ in files})
    colls = [f"{coll}/{d}" if d else coll for d in dirs]
    return colls, [(str(src / rel), f"{coll}/{rel}") for rel, _, _ in files]


def run_sequential(svc: Services, src: Path, coll: str) -> float:
    from irods.keywords import REG_CHKSUM_KW

    colls, items = _plan(src, coll)
    t0 = time.monotonic()
    with svc.session() as s:
        for c in colls:
            s.collections.create(c)
        for local, target in items:
            s.data_objects.put(local, target, **{REG_CHKSUM_KW: ""})
    return time.monotonic() - t0


def run_ceiling(svc: Services, src: Path, coll: str) -> float:
    colls, items = _plan(src, coll)
    shares = [(_conn(svc), items[i::WORKERS]) for i in range(WORKERS)]
    ctx = mp.get_context("fork")
    t0 = time.monotonic()
    with svc.session() as s:
        for c in colls:
            s.collections.create(c)
    with ctx.Pool(WORKERS) as pool:
        pool.map(_put_files, shares)
    return time.monotonic() - t0


def run_ingestd(svc: Services, src: Path, coll: str, *, n: int, work: Path, label: str) -> float | str:
    zone_dir = work / f"zone-{label}"
    zone_dir.mkdir(parents=True, exist_ok=True)
    cfg = write_config(work / f"tp-{label}.toml", svc, [{
        "name": "tp", "path": str(zone_dir), "collection": coll, "mode": "put", "settle": "0.2s",
        "rescan": "1h"}], batch_bytes="64MiB")
    r = svc.redis.client()
    log = work / f"tp-{label}.log"
    from irods_ingestd.ledger import Ledger

    led = Ledger(r)
    moved = zone_dir / "run"
    with Procs() as procs:
        procs.ingestd(cfg, log, "run")
        for i in range(WORKERS):
            procs.ingestd(cfg, log, "worker", "--name", f"tp-{label}-{i}")
        if not wait_workers(r, WORKERS) or not wait_until(
                lambda: (daemon_status(r) or {}).get("zones", {}).get("tp", {}).get("walks", 0) >= 1, 30):
            return f"daemon/workers did not come up (see {log})"
        t0 = time.monotonic()
        os.rename(src, moved)
        try:
            timeout = 120 + n / 5

            def finished() -> bool:
                s = led.stats("tp")
                return s["done"] + s["failed"] >= n

            ok = wait_until(finished, timeout, 0.02)
            secs = time.monotonic() - t0
            stats = led.stats("tp")
        finally:
            procs.stop()
            os.rename(moved, src)
    if not ok:
        return f"only {stats['done']} of {n} done after {timeout:.0f}s (failed {stats['failed']})"
    if stats["failed"]:
        return f"{stats['failed']} files failed (see {log})"
    return secs


def run_automated_ingest(svc: Services, src: Path, coll: str, *, work: Path, label: str) -> float | str:
    venv = ensure_ai_venv()
    if venv is None:
        return "automated-ingest 0.7.0 could not be installed"
    if svc.real_irods:
        env_extra = {"IRODS_ENVIRONMENT_FILE": str(svc.env_file)}
    else:
        i = svc.irods
        env_extra = {"IRODS_HOST": i.host, "IRODS_PORT": str(i.port), "IRODS_USER_NAME": i.user,
                     "IRODS_ZONE_NAME": i.zone, "IRODS_PASSWORD": i.password}
    env = {**os.environ, **env_extra, "CELERY_BROKER_URL": svc.redis.tcp_url}
    env.pop("PYTHONPATH", None)
    handler = work / f"ai_put_{label}.py"
    handler.write_text(EVENT_HANDLER)
    log = work / f"ai-{label}.log"
    with svc.session() as s:
        s.collections.create(coll)
    with Procs() as procs:
        procs.procs.append(subprocess.Popen(
            [str(venv / "bin/celery"), "-A", "irods_capability_automated_ingest", "worker", "-Q",
             "restart,path,file", "-c", str(WORKERS), "--loglevel", "warning"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env, cwd=work,  # noqa: SIM115
            stdin=subprocess.DEVNULL))
        # ready when celery answers a ping
        ping = [str(venv / "bin/celery"), "-A", "irods_capability_automated_ingest", "inspect", "ping",
                "--timeout", "2"]
        if not wait_until(lambda: subprocess.run(ping, env=env, cwd=work, capture_output=True).returncode == 0,
                          60, 0.5):
            return f"Celery workers did not come up (see {log})"
        cmd = [str(venv / "bin/python"), "-m", "irods_capability_automated_ingest.irods_sync", "start",
               str(src), coll, "--synchronous", "--event_handler", str(handler), "--job_name", f"bench-{label}"]
        t0 = time.monotonic()
        res = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True, timeout=3600)
        secs = time.monotonic() - t0
    if res.returncode != 0:
        with open(log, "a") as f:
            f.write(res.stdout + res.stderr)
        return f"irods_sync exited {res.returncode} (see {log})"
    return secs


# -- the benchmark ---------------------------------------------------------------------------------------
def run(svc: Services, work: Path, res: Results, quick: bool) -> None:
    sets = [("small", 10, 30 if quick else 300, 4096), ("large", 3, 10 if quick else 100, 4 * 1024 * 1024)]
    for label, ndirs, per_dir, size in sets:
        src = work / f"data-{label}"
        n, nbytes = make_files(src, ndirs, per_dir, size)
        time.sleep(2.5)  # older than settle + the daemon's slack: all contenders see the same, complete files
        print(f"  {label}: {n} files of {size // 1024} KiB ({nbytes / 1e6:.1f} MB); load {loadavg()}",
              flush=True)
        rates: dict[str, float] = {}
        contenders = [
            ("ingestd", partial(run_ingestd, svc, src, n=n, work=work, label=label)),
            ("a: sequential put", partial(run_sequential, svc, src)),
            ("b: automated-ingest 0.7.0", partial(run_automated_ingest, svc, src, work=work, label=label)),
            ("c: 4 procs, no bookkeeping", partial(run_ceiling, svc, src)),
        ]
        for name, fn in contenders:
            svc.flush_redis()
            coll = f"{svc.home}/bench-tp-{label}-{name.split(':')[0]}-{int(time.time())}"
            target = f"{coll}/run" if name == "ingestd" else coll
            print(f"    {name} → {coll} (load {loadavg()})", flush=True)
            if not svc.real_irods:
                svc.irods.reset_counters()
            try:
                out = fn(coll)
            except Exception as e:  # noqa: BLE001 - reported, the other contenders still run
                out = f"{type(e).__name__}: {e}"
            what = f"{label} {n}x{size // 1024}KiB {name}"
            if isinstance(out, str):
                res.fail("throughput", what, out)
                svc.remove_collection(coll)
                continue
            got, got_bytes = svc.count_objects(target)
            if got != n or got_bytes != nbytes:
                res.fail("throughput", what, f"{got} of {n} objects ({got_bytes} of {nbytes} bytes) in iRODS "
                         f"after {out:.1f}s")
                svc.remove_collection(coll)
                continue
            rates[name] = n / out
            calls = ""
            if not svc.real_irods:
                c = svc.irods.counters()
                api = sum(v for k, v in c.items() if k.isupper() and k != "DATA_OBJ_WRITE_BYTES")
                calls = f"; {api / n:.1f} API calls/file, {c.get('connections_accepted', 0)} connections"
            res.add("throughput", what, f"{n / out:.1f} files/s, {nbytes / out / 1e6:.1f} MB/s ({out:.2f}s{calls})")
            svc.remove_collection(coll)
        if "ingestd" in rates:
            goals = {"a": 3.0, "b": 2.0, "c": 0.9} if label == "small" else {}
            for key, name in (("a", "a: sequential put"), ("b", "b: automated-ingest 0.7.0"),
                              ("c", "c: 4 procs, no bookkeeping")):
                if name not in rates:
                    continue
                ratio = rates["ingestd"] / rates[name]
                goal = goals.get(key)
                res.add("throughput", f"{label} ingestd/{key}", f"{ratio:.2f}x",
                        f">={goal}x" if goal else "", (ratio >= goal) if goal else None)
        if src.exists():
            subprocess.run(["rm", "-rf", str(src)], check=False)
