"""Throughput: files from a landing zone into iRODS, contenders side by side, each into a fresh collection.

- ingestd put / ingestd register: `irods-ingestd run` + 4 `irods-ingestd worker` (non-forking RQ workers),
  started and idle on an empty zone with the default provenance metadata and verification; the clock starts
  when a prepared tree (hard links to the data set) is renamed into the zone (one IN_MOVED_TO for the top
  directory; the daemon walks it) and stops when the ledger counts every file done (or failed). Register
  mode needs the landing tree readable by the server's service account (unix user `irods`): the path from
  / down is opened to others (o+x, and o+r on the tree).
- (a) one session, `data_objects.put(..., regChksum="")` file after file (like `iput -K`).
- (b) irods_capability_automated_ingest 0.7.0 (its own virtualenv under the work directory), 4 Celery
  workers on the same Redis (TCP: it cannot use a unix socket), `irods_sync start --synchronous` with a PUT
  event handler that asks for a server checksum (regChksum); the clock covers the `start` command (its walk
  included). It gets the iRODS credentials from the five IRODS_* variables (with the password: it has no
  other way to get one but ~/.irods/.irodsA).
- (c) the server's ceiling: 4 threads, each with its own session, a quarter of the files each, a bare
  `data_objects.put` (no checksum, no metadata, no bookkeeping). No goals, to show where the time goes:
  (c+) the same with regChksum; (d) put+regChksum and 7 AVUs like ingestd's provenance in one
  `apply_atomic_operations` call; (r) `data_objects.register` with regChksum and the same 7 AVUs.
Every contender's objects, bytes and checksums are counted by GenQuery after its run; a contender that did
not put every file, byte for byte, is reported as FAIL with what was missing, never timed as a success.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .common import (
    Procs,
    Results,
    Services,
    clear_daemon_status,
    list_tree,
    loadavg,
    make_files,
    wait_until,
    wait_workers,
    write_config,
    zone_walked,
)

AI_PINS = ["irods-capability-automated-ingest==0.7.0", "redis==4.6.0", "celery[redis]==5.3.6", "kombu==5.3.7"]
AI_VENV_VAR = "INGESTD_BENCH_AI_VENV"  # an existing automated-ingest virtualenv to use instead of a new one
WORKERS = 4
SMALL_DIRS, LARGE_DIRS = 10, 3

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
        options[REG_CHKSUM_KW] = ""  # a server checksum, like anchor (a)
        func(*args, **options)
'''

# contender keys, labels
PUT, REG, A, B, C, C_SUM, D, R = "put", "reg", "a", "b", "c", "c+", "d", "r"
PUT_C, REG_C = "put-coll", "reg-coll"  # ingestd with provenance = "collection" (no metadata call a file)
INGESTD = (PUT, REG, PUT_C, REG_C)
LABELS = {
    PUT: "ingestd put (daemon + 4 workers)",
    REG: "ingestd register (daemon + 4 workers)",
    PUT_C: "ingestd put, provenance on the collection",
    REG_C: "ingestd register, provenance on the collection",
    A: "a: 1 session, put+regChksum",
    B: "b: automated-ingest 0.7.0 PUT, 4 Celery workers",
    C: "c: 4 threads, bare put",
    C_SUM: "c+: 4 threads, put+regChksum",
    D: "d: 4 threads, put+regChksum+7 AVUs",
    R: "r: 4 threads, register+regChksum+7 AVUs",
}
# goals of issue 13, for 3,000 x 4 KiB (small) and 300 x 4 MiB (large), on the real server
GOALS: dict[str, dict[tuple[str, str], float]] = {
    "small": {(PUT, C): 0.8, (PUT, A): 2.0, (PUT, B): 1.5, (REG, C): 5.0,
              (PUT_C, C): 0.8, (PUT_C, A): 2.0, (PUT_C, B): 1.5, (REG_C, C): 5.0},
    "large": {(PUT, C): 0.9, (PUT_C, C): 0.9},
}
RATIOS = [(PUT, A), (PUT, B), (PUT, C), (PUT, D), (REG, A), (REG, B), (REG, C), (REG, R),
          (PUT_C, A), (PUT_C, B), (PUT_C, C), (PUT_C, PUT), (REG_C, A), (REG_C, C), (REG_C, REG)]


@dataclass
class Outcome:
    seconds: float | None = None  # None: did not complete
    why: str = ""  # why not
    note: str = ""  # shown beside the figure


# -- automated-ingest ------------------------------------------------------------------------------------
def base_python() -> str:
    """The interpreter this venv was made from (not the project's venv: automated-ingest gets its own)."""
    for cand in (Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}",
                 Path(sys.base_prefix) / "bin" / "python3"):
        if cand.exists():
            return str(cand)
    return "python3"


def ensure_ai_venv(work: Path) -> tuple[Path | None, str]:
    """automated-ingest 0.7.0's virtualenv: $INGESTD_BENCH_AI_VENV if set, else one made in the work directory
    with FACTS.md's pins (a plain install fails on Python 3.11: redis<5 makes pip backtrack to an old kombu)."""
    given = os.environ.get(AI_VENV_VAR)
    venv = Path(given) if given else work / "ai-venv"
    if (venv / "bin" / "celery").exists() and (venv / ".installed").exists():
        return venv, f"{venv} (existing)"
    t0 = time.monotonic()
    print(f"    installing irods_capability_automated_ingest 0.7.0 into {venv} ...", flush=True)
    try:
        subprocess.run([base_python(), "-m", "venv", str(venv)], check=True, capture_output=True)
        subprocess.run([str(venv / "bin/pip"), "install", "-q", *AI_PINS], check=True, capture_output=True,
                       text=True)
    except subprocess.CalledProcessError as e:
        tail = ((e.stderr or "") if isinstance(e.stderr, str) else "").strip().splitlines()[-3:]
        return None, f"automated-ingest could not be installed: {e}; {' / '.join(tail)}"
    except OSError as e:
        return None, f"automated-ingest could not be installed: {e}"
    (venv / ".installed").touch()
    return venv, f"{venv} (installed in {time.monotonic() - t0:.0f}s)"


def ai_env(svc: Services, venv: Path) -> dict[str, str]:
    """automated-ingest's environment: nothing of ours (no IRODS_*, no venv, no PYTHONPATH) but its own venv
    on PATH, the five IRODS_* variables with the password, and Celery's broker on TCP."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IRODS_", "CELERY_", "INGESTD_")) and k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    i = svc.irods
    env.update({
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}", "VIRTUAL_ENV": str(venv),
        "IRODS_HOST": str(i.host), "IRODS_PORT": str(i.port), "IRODS_USER_NAME": str(i.user),
        "IRODS_ZONE_NAME": str(i.zone), "IRODS_PASSWORD": str(i.password),
        "CELERY_BROKER_URL": svc.redis.tcp_url,
    })
    return env


def _first_error(log: Path) -> str:
    """The first task failure Celery logged, in one line."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    m = re.search(r"raised unexpected: (.*)", text) or re.search(r"^(\w+(?:\.\w+)*(?:Error|Exception)\b.*)$", text,
                                                                  re.M)
    return m.group(1).strip()[:200] if m else ""


def run_automated_ingest(svc: Services, src: Path, coll: str, *, n: int, work: Path, label: str) -> Outcome:
    venv, how = ensure_ai_venv(work)
    if venv is None:
        return Outcome(why=how)
    print(f"    automated-ingest: {how}", flush=True)
    env = ai_env(svc, venv)
    handler = work / f"ai_put_{label}.py"
    handler.write_text(EVENT_HANDLER)
    clog, slog = work / f"ai-{label}-celery.log", work / f"ai-{label}-sync.log"
    with svc.session() as s:
        s.collections.create(coll)
    celery = [str(venv / "bin/celery"), "-A", "irods_capability_automated_ingest"]
    with Procs() as procs:
        procs.start([*celery, "worker", "-Q", "restart,path,file", "-c", str(WORKERS), "--loglevel", "warning"],
                    clog, env=env, cwd=work, group=True)
        ping = [*celery, "inspect", "ping", "--timeout", "2"]
        if not wait_until(lambda: subprocess.run(ping, env=env, cwd=work, capture_output=True).returncode == 0,
                          60, 0.5):
            return Outcome(why=f"Celery workers did not come up (see {clog})")
        job = f"bench-{label}-{os.getpid()}"
        cmd = [str(venv / "bin/python"), "-m", "irods_capability_automated_ingest.irods_sync", "start", str(src),
               coll, "--synchronous", "--event_handler", str(handler), "--job_name", job]
        watch = TasksWatch(svc.redis.client(), job)
        t0 = time.monotonic()
        with open(slog, "wb") as out:
            proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
            try:
                watch.follow(proc, t0, 300 + n)
                rc = proc.wait(10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        wall = time.monotonic() - t0
    remove_handler_copies(job)
    if rc != 0:
        first = _first_error(clog) or _first_error(slog)
        return Outcome(why=f"irods_sync exited {rc}" + (f": {first}" if first else "") + f" (see {clog}, {slog})")
    if watch.done_at is None:  # never saw its task counter: its own wall time (it polls once a second)
        return Outcome(wall, note=f"irods_sync returned at {wall:.2f}s")
    return Outcome(watch.done_at, note=f"tasks done at {watch.done_at:.2f}s, irods_sync returned at {wall:.2f}s")


def remove_handler_copies(job: str) -> None:
    """automated-ingest's workers write the event handler of a job to /tmp/event_handler<job><uuid>.py (a fixed
    directory) and import it from there; nothing removes them."""
    tmp = Path("/tmp")
    mine = re.compile(re.escape("event_handler" + job.replace(".", "__")) + r"[0-9a-f]{32}(\.py|\..*\.pyc)")
    for f in [*tmp.glob("event_handler*.py"), *tmp.glob("__pycache__/event_handler*.pyc")]:
        if mine.fullmatch(f.name):
            try:
                f.unlink()
            except OSError:
                pass


class TasksWatch:
    """When automated-ingest's job finished, to 20 ms: its task counter (`tasks:/JOB` in Redis) back to 0 or
    gone after it was seen above 0, with `irods_sync start` alive until then. `--synchronous` itself polls that
    counter only once a second, which would add up to 1 s to its time."""

    def __init__(self, r: Any, job: str) -> None:
        self.r = r
        self.key = f"tasks:/{job}"
        self.done_at: float | None = None
        self.seen = False

    def follow(self, proc: subprocess.Popen, t0: float, timeout: float) -> None:
        deadline = t0 + timeout
        while proc.poll() is None:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"irods_sync still running after {timeout:.0f}s")
            v = self.r.get(self.key)
            if v is not None and int(v) > 0:
                self.seen = True
            elif self.seen and self.done_at is None:
                self.done_at = now - t0
            time.sleep(0.02)


# -- anchors ---------------------------------------------------------------------------------------------
def _plan(src: Path, coll: str) -> tuple[list[str], list[tuple[str, str]]]:
    files = sorted(list_tree(src))
    dirs = sorted({os.path.dirname(rel) for rel, _, _ in files})
    colls = [f"{coll}/{d}" if d else coll for d in dirs]
    return colls, [(str(src / rel), f"{coll}/{rel}") for rel, _, _ in files]


def run_sequential(svc: Services, src: Path, coll: str) -> Outcome:
    """(a) one session, put with a server checksum, file after file."""
    from irods.keywords import REG_CHKSUM_KW

    colls, items = _plan(src, coll)
    t0 = time.monotonic()
    with svc.session() as s:
        for c in colls:
            s.collections.create(c)
        for local, target in items:
            s.data_objects.put(local, target, **{REG_CHKSUM_KW: ""})
    return Outcome(time.monotonic() - t0)


def _avu_ops(local: str) -> list[Any]:
    """Seven AVUs like ingestd's default provenance (host, source path, zone, size, mtime, time, version)."""
    from irods.meta import AVUOperation, iRODSMeta

    st = os.stat(local)
    avus = [iRODSMeta("bench::source_host", os.uname().nodename), iRODSMeta("bench::source_path", local),
            iRODSMeta("bench::zone", "bench"), iRODSMeta("bench::size", str(st.st_size), "bytes"),
            iRODSMeta("bench::mtime", str(st.st_mtime_ns), "ns"), iRODSMeta("bench::ingest_time", f"{time.time():.6f}"),
            iRODSMeta("bench::version", "0")]
    return [AVUOperation(operation="add", avu=m) for m in avus]


def _share(conn: dict[str, Any], items: list[tuple[str, str]], op: str, opts: dict[str, str], avus: bool) -> int:
    from irods.models import DataObject
    from irods.session import iRODSSession

    with iRODSSession(**conn) as s:
        for local, target in items:
            if op == "register":
                s.data_objects.register(local, target, **opts)
            else:
                s.data_objects.put(local, target, **opts)
            if avus:
                s.metadata.apply_atomic_operations(DataObject, target, *_avu_ops(local))
    return len(items)


def run_threads(svc: Services, src: Path, coll: str, *, op: str = "put", chksum: bool = False,
                avus: bool = False) -> Outcome:
    """4 threads, each with its own session and a quarter of the files: the put (or register), a server
    checksum if asked, 7 AVUs in one atomic call if asked; no lookup, no verification, no bookkeeping."""
    from irods.keywords import REG_CHKSUM_KW

    if op == "register":  # the server reads the files as `irods`
        server_readable(src)
        open_to_others(src)
    colls, items = _plan(src, coll)
    opts = {REG_CHKSUM_KW: ""} if chksum else {}
    conn = svc.conn()
    t0 = time.monotonic()
    with svc.session() as s:
        for c in colls:
            s.collections.create(c)
    with ThreadPoolExecutor(WORKERS) as pool:
        done = sum(f.result() for f in [pool.submit(_share, conn, items[i::WORKERS], op, opts, avus)
                                        for i in range(WORKERS)])
    secs = time.monotonic() - t0
    return Outcome(secs) if done == len(items) else Outcome(why=f"{op} {done} of {len(items)}")


# -- ingestd ---------------------------------------------------------------------------------------------
def open_to_others(root: Path) -> None:
    """o+rx on every directory of the tree and o+r on its files (the server reads them as `irods`)."""
    for dirpath, _dirs, files in os.walk(root):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o005)
        for name in files:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode | 0o004)


def server_readable(path: Path) -> None:
    """`path` listable and every directory above it searchable by other users (tests/landing.py's rule)."""
    from tests.landing import server_readable as open_path

    open_path(path)


def sample_avus(svc: Services, coll: str) -> int:
    """The number of AVUs on one object below coll (the provenance the ingest attached)."""
    from irods.column import Like
    from irods.models import Collection, DataObject

    with svc.session() as s:
        row = next(iter(s.query(DataObject.name, Collection.name).filter(Like(Collection.name, coll + "%"))
                        .limit(1)), None)
        if row is None:
            return 0
        return len(s.data_objects.get(f"{row[Collection.name]}/{row[DataObject.name]}").metadata.items())


def run_ingestd(svc: Services, src: Path, coll: str, *, mode: str, n: int, work: Path, label: str,
                provenance: str = "object") -> Outcome:
    name = f"{label}-{mode}-{provenance}"
    zone_dir = work / f"zone-{name}"
    zone_dir.mkdir(parents=True, exist_ok=True)
    tree = work / f"tree-{name}"
    subprocess.run(["cp", "-al", str(src), str(tree)], check=True)  # hard links: same files, own tree
    if mode == "register":
        server_readable(zone_dir)
        open_to_others(tree)
    cfg = write_config(work / f"tp-{name}.toml", svc, [{
        "name": "tp", "path": str(zone_dir), "collection": coll, "mode": mode, "settle": "0.2s",
        "rescan": "1h", "provenance": provenance}], batch_bytes="64MiB")
    r = svc.redis.client()
    log = work / f"tp-{name}.log"
    from irods_ingestd.ledger import Ledger

    led = Ledger(r)
    clear_daemon_status(r)
    with Procs() as procs:
        dpid = procs.ingestd(cfg, log, "run").pid
        for i in range(WORKERS):
            procs.ingestd(cfg, log, "worker", "--name", f"tp-{name}-{i}")
        if not wait_workers(r, WORKERS) or not wait_until(lambda: zone_walked(r, "tp", dpid), 60):
            return Outcome(why=f"daemon/workers did not come up (see {log})")
        t0 = time.monotonic()
        os.rename(tree, zone_dir / "run")
        timeout = 120 + n / 2

        def finished() -> bool:
            s = led.stats("tp")
            return s["done"] + s["failed"] >= n

        ok = wait_until(finished, timeout, 0.02)
        secs = time.monotonic() - t0
        stats = led.stats("tp")
    if not ok:
        return Outcome(why=f"only {stats['done']} of {n} done after {timeout:.0f}s (failed {stats['failed']}; "
                       f"see {log})")
    if stats["failed"]:
        return Outcome(why=f"{stats['failed']} of {n} files failed (see {log})")
    return Outcome(secs)


# -- the benchmark ---------------------------------------------------------------------------------------
def run(svc: Services, work: Path, res: Results, quick: bool, small: int | None = None,
        large: int | None = None) -> None:
    n_small = small if small is not None else (300 if quick else 3000)
    n_large = large if large is not None else (30 if quick else 300)
    sets = [("small", SMALL_DIRS, n_small, 4096), ("large", LARGE_DIRS, n_large, 4 * 1024 * 1024)]
    for label, ndirs, want, size in sets:
        if want <= 0:
            continue
        ndirs = min(ndirs, want)
        src = work / f"data-{label}"
        n, nbytes = make_files(src, ndirs, max(1, want // ndirs), size)
        time.sleep(2.5)  # older than settle + the daemon's slack: all contenders see the same, complete files
        print(f"  {label}: {n} files of {size // 1024} KiB in {ndirs} directories ({nbytes / 1e6:.1f} MB); "
              f"load {loadavg()}", flush=True)
        contenders: list[tuple[str, Callable[[str], Outcome]]] = [
            (PUT, partial(run_ingestd, svc, src, mode="put", n=n, work=work, label=label)),
            (REG, partial(run_ingestd, svc, src, mode="register", n=n, work=work, label=label)),
            (PUT_C, partial(run_ingestd, svc, src, mode="put", n=n, work=work, label=label, provenance="collection")),
            (REG_C, partial(run_ingestd, svc, src, mode="register", n=n, work=work, label=label,
                            provenance="collection")),
            (A, partial(run_sequential, svc, src)),
            (B, partial(run_automated_ingest, svc, src, n=n, work=work, label=label)),
            (C, partial(run_threads, svc, src)),
            (C_SUM, partial(run_threads, svc, src, chksum=True)),
            (D, partial(run_threads, svc, src, chksum=True, avus=True)),
            (R, partial(run_threads, svc, src, op="register", chksum=True, avus=True)),
        ]
        rates = {}
        for key, fn in contenders:
            rate = run_one(svc, res, label, key, fn, n, nbytes, size)
            if rate:
                rates[key] = rate
        for x, y in RATIOS:
            if x not in rates or y not in rates:
                continue
            ratio = rates[x] / rates[y]
            goal = GOALS.get(label, {}).get((x, y))
            what = f"{label} {LABELS[x].split(' (')[0]} / {LABELS[y].split(':')[0].split(' (')[0]}"
            if goal is None:
                res.add("throughput", what, f"{ratio:.2f}x")
            elif svc.real_irods:
                res.add("throughput", what, f"{ratio:.2f}x", f">={goal}x", ratio >= goal)
            else:  # the goals are for the real server: no verdict against the stand-in
                res.add("throughput", what, f"{ratio:.2f}x", f">={goal}x on the real server")
        for p in [src, *work.glob(f"zone-{label}-*"), *work.glob(f"tree-{label}-*")]:
            subprocess.run(["rm", "-rf", str(p)], check=False)


def run_one(svc: Services, res: Results, label: str, key: str, fn: Callable[[str], Outcome], n: int, nbytes: int,
            size: int) -> float | None:
    """One contender into a fresh collection: run, count in iRODS, report, remove the collection."""
    svc.flush_redis()
    coll = f"{svc.home}/bench-tp-{label}-{key.replace('+', 'sum')}-{os.getpid()}-{int(time.time())}"
    target = f"{coll}/run" if key in INGESTD else coll
    what = f"{label} {n}x{size // 1024}KiB {LABELS[key]}"
    load = loadavg().split()[0]
    print(f"    {LABELS[key]} → {coll} (load {loadavg()})", flush=True)
    if not svc.real_irods:
        svc.irods.reset_counters()
    try:
        try:
            out = fn(coll)
        except Exception as e:  # noqa: BLE001 - reported, the other contenders still run
            out = Outcome(why=f"{type(e).__name__}: {e}")
        if out.seconds is None:
            res.fail("throughput", what, out.why)
            return None
        secs = out.seconds
        got, got_bytes, summed = svc.count_objects(target)
        if got != n or got_bytes != nbytes:
            res.fail("throughput", what, f"{got} of {n} objects ({got_bytes} of {nbytes} bytes) in iRODS after "
                     f"{secs:.1f}s")
            return None
        extra = (f"{out.note}; " if out.note else "") + f"{summed} with a checksum"
        if key in INGESTD:
            extra += f", {sample_avus(svc, target)} AVUs on a sample object"
        if not svc.real_irods:
            c = svc.irods.counters()
            api = sum(v for k, v in c.items() if k.isupper() and k != "DATA_OBJ_WRITE_BYTES")
            extra += f"; {api / n:.1f} API calls/file, {c.get('connections_accepted', 0)} connections"
        res.add("throughput", what, f"{n / secs:.1f} files/s, {nbytes / secs / 1e6:.1f} MB/s ({secs:.2f}s; {extra}; "
                f"load {load})")
        return n / secs
    finally:
        svc.remove_collection(coll)
