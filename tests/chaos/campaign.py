"""The fault campaign (`make chaos`, `python -m bench.chaos`): irods-ingestd under kill -9s and outages.

While files of mixed sizes (0 B to a few MiB, a handful of 40 MiB ones) are written into three landing
zones (`keep`: put, landing files kept; `move`: put, `after = "move"`; `delete`: put, `after = "delete"`,
where some names are used again: a file ingested and deleted, then a different one under the same name,
see tests/chaos/samename.py), it injects on a seeded schedule:

- daemon-kill: `kill -9` of `irods-ingestd run`, restarted;
- worker-kill: `kill -9` of one or two of the 4 `irods-ingestd worker`s, restarted;
- worker-kill-large: a 40 MiB file is written, and the worker putting it is killed mid-transfer;
- redis-aof: `kill -9` of Redis (AOF, appendfsync always), restarted with its data;
- redis-empty: `kill -9` of Redis, restarted empty (what a Redis without persistence does): the
  reconcile walks (`rescan` 5 s here) must find again what the lost ledger and queue held;
- irods-refuse: the iRODS test server refuses new connections (and drops the open ones) for a while;
- irods-drop: every open iRODS connection is dropped, during a 40 MiB put when the schedule says so;
- irods-delay: every iRODS reply is delayed for a while;
- irods-fail: the next 1-3 calls of DATA_OBJ_WRITE (possibly after some MiB), DATA_OBJ_CLOSE,
  ATOMIC_APPLY_METADATA_OPERATIONS, DATA_OBJ_RENAME or COLL_CREATE fail with an error code
  python-irodsclient knows;
- inotify-overflow: `fs.inotify.max_queued_events` lowered to 64, the daemon restarted (the limit is
  taken when an inotify instance is made), a burst of small files written, the value restored (in a
  `finally`) and the daemon restarted again;
- irods-outage (once): iRODS refuses and drops every connection for 120 s (`--short`: a little longer than
  the workers' retry budget), so files are handed back to the daemon and queued again;
- daemon-second: a second daemon on the same config for a while, maybe while the first is killed (a
  refusal to start is expected, not a crash); see tests/chaos/faults.py;
- worker-kill-after (only with `--kinds`: irods-ingestd as it is fails it): workers killed while they
  run deferred deletes/moves, files of the same size and mtime renamed onto verified ones meanwhile.

After the last fault it waits (bounded) until every file is in iRODS or listed as failed and the
deferred deletes and moves are done (tests/chaos/drain.py), records the failures, runs `irods-ingestd
retry` (what an operator does after an outage) and waits again, then checks with python-irodsclient and
the landing zones (tests/chaos/check.py): every file exactly once at its path with the right checksum and
bytes, earlier versions of a reused name at `name.~k~`, no stray `.name.ingestd-<tag>.part` objects,
nothing extra, no landing file moved away or deleted unless its object is right, nothing in RQ's started
registry. It prints a table and exits non-zero when anything
is lost, duplicated, wrong, stray, stuck or unexplained.

Processes run as subprocesses with stderr in `<run dir>/logs/`; kills are SIGKILL. The schedule, names,
sizes and contents follow `--seed`; the interleaving with the system's own timing does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry

from irods_ingestd import keys, names
from tests.chaos import drain as chaos_drain
from tests.chaos import faults as chaos_faults
from tests.chaos.check import Expected, Findings, ZoneLayout, list_objects, superseded_objects, verify
from tests.chaos.faults import FaultsExtra
from tests.chaos.report import report
from tests.chaos.samename import SameNameStats, SameNameWriter, plan_same_names
from tests.irods_server.harness import IrodsServerProcess
from tests.redis_harness import RedisServerProcess

REPO = Path(__file__).resolve().parents[2]
SYSCTL = Path("/proc/sys/fs/inotify/max_queued_events")
PREFIX = "ingestd"
QUEUE = "chaos"
MiB = 1 << 20
LARGE = 40 * MiB
WORKERS = 4
ZONES = ("keep", "move", "delete")  # named after their `after`
OUTAGE = 120.0  # seconds of the full campaign's iRODS outage
RETRIES, BACKOFF, BACKOFF_MAX = 5, 1.0, 10.0  # the campaign's [queue] retries: a 25 s budget a file
FIELD = re.compile(r'\b([A-Z_]+)=("(?:[^"\\]|\\.)*"|\S+)')  # KEY=value fields of the stderr log lines

KINDS = {
    "daemon-kill": "daemon kill -9, restart",
    "worker-kill": "worker kill -9, restart",
    "worker-kill-large": "worker kill -9 during a 40 MiB put",
    "redis-aof": "Redis kill -9, restart with AOF",
    "redis-empty": "Redis kill -9, restart empty",
    "irods-refuse": "iRODS refuses connections",
    "irods-drop": "iRODS drops connections",
    "irods-delay": "iRODS slow replies",
    "irods-fail": "iRODS fails calls",
    "inotify-overflow": "inotify queue overflow",
    "irods-outage": "iRODS outage (refuse + drop all)",
    "daemon-second": "second daemon, same config",
    "worker-kill-after": "worker kill -9 during deferred deletes/moves",
}
# not in the default mix (`--kinds` adds them): they fail on irods-ingestd as it is; see chaos_faults.py
OPTIONAL = {"worker-kill-after"}
DEFAULT_KINDS = tuple(k for k in KINDS if k not in OPTIONAL)
WEIGHTS = {"daemon-kill": 3, "worker-kill": 3, "worker-kill-large": 2, "redis-aof": 2, "redis-empty": 1.5,
           "irods-refuse": 2, "irods-drop": 2, "irods-delay": 2, "irods-fail": 3, "inotify-overflow": 1,
           "irods-outage": 0, "daemon-second": 1.5, "worker-kill-after": 1.5}  # 0: exactly once
# error codes python-irodsclient knows; the package retries the first kind and fails the file for the second
FAIL_CODES = {
    "DATA_OBJ_WRITE": [(-513000, "UNIX_FILE_WRITE_ERR"), (-510013, "UNIX_FILE_OPEN_ERR")],
    "DATA_OBJ_CLOSE": [(-514000, "UNIX_FILE_CLOSE_ERR"), (-27000, "SYS_COPY_LEN_ERR")],
    # a put's metadata and its rename into place (the copy's checksum is read back with a GenQuery)
    "ATOMIC_APPLY_METADATA_OPERATIONS": [(-115000, "SYS_SOCK_READ_TIMEDOUT"), (-818000, "CAT_NO_ACCESS_PERMISSION")],
    "DATA_OBJ_RENAME": [(-115000, "SYS_SOCK_READ_TIMEDOUT"), (-818000, "CAT_NO_ACCESS_PERMISSION")],
    "COLL_CREATE": [(-806000, "CAT_SQL_ERR"), (-27000, "SYS_COPY_LEN_ERR")],
}


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------------
# the plan: files and faults, all from the seed


@dataclass
class FilePlan:
    zone: str
    rel: str
    size: int
    how: str = "direct"  # direct | rsync (temporary name, then rename) | slow (in pieces, pauses < settle)


def file_size(rng: random.Random) -> int:
    x = rng.random()
    if x < 0.03:
        return 0
    if x < 0.30:
        return rng.randint(1, 1024)
    if x < 0.85:
        return rng.randint(1025, 256 * 1024)
    if x < 0.97:
        return rng.randint(256 * 1024, 2 * MiB)
    return rng.randint(2 * MiB, 4 * MiB)


def plan_files(rng: random.Random, n: int, large: int) -> list[FilePlan]:
    out: list[FilePlan] = []
    names = ["sample", "reads", "image", "run data", "résumé", "plate"]
    for i in range(n):
        zone = ZONES[i % len(ZONES)]
        top = f"batch{i // 100:03d}"
        sub = f"lane{rng.randint(1, 4)}"
        name = f"{rng.choice(names)}-{i:05d}.dat"
        how = rng.choices(["direct", "rsync", "slow"], [0.86, 0.1, 0.04])[0]
        out.append(FilePlan(zone, f"{top}/{sub}/{name}", file_size(rng), how))
    for k in range(large):  # spread through the writer's stream
        i = rng.randrange(len(out)) if out else 0
        out.insert(i, FilePlan(rng.choice(ZONES), f"large/big-{k:02d}.bin", LARGE))
    return out


@dataclass
class Fault:
    kind: str
    gap: float  # seconds of quiet before it
    params: dict[str, Any] = field(default_factory=dict)


def plan_faults(rng: random.Random, n: int, short: bool, outage: float = OUTAGE,
                kinds: tuple[str, ...] = DEFAULT_KINDS) -> list[Fault]:
    chosen = list(kinds) if n >= len(kinds) else rng.sample(kinds, n)
    weights = [WEIGHTS[k] for k in kinds]
    while len(chosen) < n and any(weights):
        chosen.append(rng.choices(kinds, weights)[0])
    rng.shuffle(chosen)
    gap = (1.0, 3.5) if short else (2.0, 7.0)
    out = []
    for kind in chosen:
        p: dict[str, Any] = chaos_faults.plan_params(kind, rng, short, outage) or {}
        if kind == "daemon-kill":
            p["down"] = round(rng.uniform(0.0, 2.0), 2)
        elif kind == "worker-kill":
            p["count"] = rng.choice([1, 1, 2])
            p["down"] = round(rng.uniform(0.0, 3.0), 2)
        elif kind == "worker-kill-large":
            p["zone"] = rng.choice(ZONES)
            p["wait"] = round(rng.uniform(0.0, 0.6), 2)
        elif kind in ("redis-aof", "redis-empty"):
            p["down"] = round(rng.uniform(0.3, 3.0), 2)
        elif kind == "irods-refuse":
            p["hold"] = round(rng.uniform(2.0, 5.0 if short else 8.0), 2)
        elif kind == "irods-drop":
            p["large"] = rng.random() < 0.5
            p["zone"] = rng.choice(ZONES)
            p["wait"] = round(rng.uniform(0.0, 0.6), 2)
        elif kind == "irods-delay":
            p["seconds"] = round(rng.uniform(0.02, 0.2), 3)
            p["hold"] = round(rng.uniform(3.0, 5.0 if short else 8.0), 2)
        elif kind == "irods-fail":
            api = rng.choice(sorted(FAIL_CODES))
            code, name = rng.choice(FAIL_CODES[api])
            p.update(api=api, error=code, error_name=name, count=rng.randint(1, 3))
            if api == "DATA_OBJ_WRITE" and rng.random() < 0.5:
                p["after_bytes"] = rng.randint(1, 24) * MiB
        elif kind == "inotify-overflow":
            p["files"] = 150 if short else 300
        out.append(Fault(kind, round(rng.uniform(*gap), 2), p))
    return out


def content(seed: int, key: str, size: int) -> bytes:
    return random.Random(f"{seed}:{key}").randbytes(size)


# ------------------------------------------------------------------------------------------------------
# the campaign


@dataclass
class Options:
    seed: int = 1
    files: int = 2000
    faults: int = 55
    short: bool = False
    large: int = 4  # 40 MiB files in the writer's stream (the large-put faults write one each as well)
    drain_timeout: float = 600.0
    job_timeout: str = "1h"
    workdir: str | None = None
    keep_data: bool = False
    outage: float | None = None  # seconds (default: OUTAGE; with short, the retry budget + 7 s)
    same_names: int = 40  # reused names in the delete zone
    kinds: tuple[str, ...] = DEFAULT_KINDS  # the fault mix


@dataclass
class Result:
    seed: int
    run_dir: Path
    faults: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    findings: Findings | None = None
    files: int = 0
    bytes: int = 0
    drained: bool = False
    drain_seconds: float | None = None
    retry_drain_seconds: float | None = None
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # zone, rel, reason
    unexplained_failures: list[tuple[str, str, str]] = field(default_factory=list)
    logged_failures: list[tuple[str, str, str]] = field(default_factory=list)  # `failed to ingest` records
    crashes: list[str] = field(default_factory=list)
    overflows_seen: int = 0
    large_kills_in_flight: int = 0
    large_drops_in_flight: int = 0
    fail_calls_fired: int = 0
    ledger_queued_after: int = 0
    runtime: float = 0.0
    inotify_skipped: str = ""
    extra: FaultsExtra = field(default_factory=FaultsExtra)
    same_name: SameNameStats = field(default_factory=SameNameStats)

    @property
    def ok(self) -> bool:
        f = self.findings
        return bool(f is not None and not f.problems() and self.drained and not self.unexplained_failures
                    and not self.crashes)


class Proc:
    def __init__(self, name: str, argv: list[str], logfile: Path) -> None:
        self.name, self.argv, self.logfile = name, argv, logfile
        self.p: subprocess.Popen | None = None
        self.starts = 0
        self.log_offset = 0  # where this run's output begins in the log
        self.restart_at: float | None = None  # the supervisor starts it again then (it refused to start)

    def start(self) -> None:
        self.starts += 1
        self.restart_at = None
        with open(self.logfile, "ab") as f:
            f.write(f"=== chaos: start #{self.starts} at {time.strftime('%H:%M:%S')} ===\n".encode())
            f.flush()
            self.log_offset = f.tell()
            self.p = subprocess.Popen(self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=f, stderr=f,
                                      start_new_session=True)

    def kill9(self) -> None:
        p, self.p, self.restart_at = self.p, None, None
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()

    def stop(self, timeout: float = 20.0) -> None:
        p, self.p, self.restart_at = self.p, None, None
        if p is None or p.poll() is not None:
            return
        os.kill(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


class Campaign:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.rng = random.Random(opts.seed)
        self.frng = random.Random(opts.seed)
        base = Path(opts.workdir) if opts.workdir else Path(tempfile.mkdtemp(prefix=f"ingestd-chaos-s{opts.seed}-"))
        base.mkdir(parents=True, exist_ok=True)
        self.dir = base
        self.logs = base / "logs"
        self.logs.mkdir(exist_ok=True)
        self.res = Result(opts.seed, base)
        self.redis = RedisServerProcess(base / "redis", persistence=True)
        self.irods = IrodsServerProcess(base / "irods")
        self.root_coll = ""
        self.zones: dict[str, ZoneLayout] = {}
        self.expected: dict[tuple[str, str], Expected] = {}
        self.versions: dict[tuple[str, str], list[Expected]] = {}  # reused names: every version written
        self.prefix, self.queue_name, self.log = PREFIX, QUEUE, log
        self.extra = self.res.extra
        self.same_writer: SameNameWriter | None = None
        self.same_thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.procs: dict[str, Proc] = {}
        self.worker_gen: Counter[int] = Counter()
        self.stop_monitor = threading.Event()
        self.host = socket.gethostname()
        self.large_extra = 0
        self.burst_no = 0
        self.cfg_path = base / "config.toml"
        self.sysctl_orig: str | None = None

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self) -> None:
        self.redis.start()
        self.irods.start()
        env = self.irods.write_env_file(self.dir / "irods_environment.json")
        pw = self.dir / "irods-password"
        pw.write_text(self.irods.password + "\n")
        pw.chmod(0o600)
        self.root_coll = f"/{self.irods.zone}/home/{self.irods.user}/chaos"
        with self.irods.session() as s:
            s.collections.create(self.root_coll)
        for name in ZONES:
            after = name
            landing = self.dir / "landing" / name
            landing.mkdir(parents=True, exist_ok=True)
            move_to = self.dir / "moved" / name if after == "move" else None
            if move_to:
                move_to.mkdir(parents=True, exist_ok=True)
            self.zones[name] = ZoneLayout(name, landing, f"{self.root_coll}/{name}", after, move_to)
        zones_toml = ""
        for z in self.zones.values():
            zones_toml += f"""
[[zone]]
name = "{z.name}"
path = "{z.landing}"
collection = "{z.collection}"
mode = "put"
settle = "2s"
rescan = "5s"
after = "{z.after}"
""" + (f'move_to = "{z.move_to}"\n' if z.move_to else "")
        self.cfg_path.write_text(f"""# written by the chaos campaign (seed {self.o.seed})
log_level = "info"

[redis]
url = "{self.redis.url}"
prefix = "{PREFIX}"

[irods]
environment_file = "{env}"
password_file = "{pw}"
connection_timeout = "30s"

[queue]
name = "{QUEUE}"
batch_files = 20
batch_bytes = "64MiB"
job_timeout = "{self.o.job_timeout}"
retries = {RETRIES}
backoff = "{BACKOFF:g}s"
backoff_max = "{BACKOFF_MAX:g}s"
""" + zones_toml)
        self.cfg_path.chmod(0o600)
        exe = [sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(self.cfg_path)]
        subprocess.run(exe + ["check-config"], check=True, cwd=REPO, stdout=subprocess.DEVNULL,
                       stderr=open(self.logs / "check-config.log", "wb"))
        self.exe = exe
        self.procs["daemon"] = Proc("daemon", exe + ["run"], self.logs / "daemon.log")
        self.procs["daemon"].start()
        for i in range(WORKERS):
            self._new_worker(i)
        log(f"run directory {self.dir}; logs in {self.logs} (daemon.log, worker-N.log, "
            f"{self.redis.workdir / 'redis.log'}, {self.irods.log_path})")

    def _new_worker(self, i: int) -> None:
        key = f"worker-{i}"
        self.worker_gen[i] += 1
        argv = self.exe + ["worker", "--name", f"chaos-w{i}-g{self.worker_gen[i]}"]
        p = self.procs.get(key)
        if p is None:
            p = self.procs[key] = Proc(key, argv, self.logs / f"worker-{i}.log")
        p.argv = argv
        p.start()

    # -- a supervisor, as systemd would be: a process that exits by itself is a crash, restarted; a daemon
    # that refused to start because another one runs its zones is expected, and started again later ----
    def monitor(self) -> None:
        while not self.stop_monitor.wait(0.5):
            with self.lock:
                for key, p in self.procs.items():
                    if p.p is None and p.restart_at is not None and time.monotonic() >= p.restart_at:
                        p.start()
                    if p.p is not None and p.p.poll() is not None and chaos_faults.refused(p):
                        self.extra.refusals[key] += 1
                        log(f"{key} (pid {p.p.pid}) refused to start (another daemon runs its zones); "
                            f"starting it again in {chaos_faults.RESTART_SEC:g}s")
                        p.p = None
                        p.restart_at = time.monotonic() + chaos_faults.RESTART_SEC
                    if p.p is not None and p.p.poll() is not None:
                        rc = p.p.returncode
                        why = (" (status 0: the shipped unit's Restart=on-failure would NOT restart it)"
                               if rc == 0 else "")
                        self.res.crashes.append(f"{key} (pid {p.p.pid}) exited by itself with {rc}{why} at "
                                                f"{time.strftime('%H:%M:%S')}; see {p.logfile}")
                        log(f"CRASH: {self.res.crashes[-1]}; restarting it")
                        p.p = None
                        time.sleep(1.0)
                        if key.startswith("worker-"):
                            self._new_worker(int(key.split("-")[1]))
                        else:
                            p.start()

    # -- writing files --------------------------------------------------------------------------------
    def write_file(self, fp: FilePlan) -> None:
        z = self.zones[fp.zone]
        data = content(self.o.seed, f"{fp.zone}/{fp.rel}", fp.size)
        path = z.landing / fp.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.lock:
            self.expected[(fp.zone, fp.rel)] = Expected(fp.zone, fp.rel, fp.size, hashlib.sha256(data).digest())
        if fp.how == "rsync":
            tmp = path.parent / f".{path.name}.{self.rng_token(fp.rel)}"
            tmp.write_bytes(data)
            os.rename(tmp, path)
        elif fp.how == "slow" and fp.size > 4:
            step = (fp.size + 3) // 4
            with open(path, "wb") as f:
                for k in range(0, fp.size, step):
                    f.write(data[k:k + step])
                    f.flush()
                    time.sleep(0.7)  # below the zones' 2 s settle
        else:
            with open(path, "wb") as f:
                for k in range(0, max(fp.size, 1), 4 * MiB):
                    f.write(data[k:k + 4 * MiB])

    @staticmethod
    def rng_token(rel: str) -> str:
        return hashlib.blake2b(rel.encode(), digest_size=3).hexdigest()

    def writer(self, plan: list[FilePlan], seconds: float, done: threading.Event) -> None:
        t0 = time.monotonic()
        try:
            for i, fp in enumerate(plan):
                due = t0 + seconds * i / max(1, len(plan))
                if (d := due - time.monotonic()) > 0:
                    time.sleep(d)
                if fp.how == "slow":
                    threading.Thread(target=self.write_file, args=(fp,), daemon=True).start()
                else:
                    self.write_file(fp)
        finally:
            done.set()

    # -- observation ----------------------------------------------------------------------------------
    def r(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis.socket), socket_timeout=10)

    def daemon_status(self, pid: int | None = None) -> dict[str, Any] | None:
        """The status record of the daemon with this pid (default: the first daemon's), whether kept as
        `{prefix}:daemon:{host}:{pid}` or, by older versions, `{prefix}:daemon:{host}`."""
        if pid is None:
            p = self.procs["daemon"].p
            pid = p.pid if p is not None else 0
        try:
            r = self.r()
            for key in (keys.status_key(PREFIX, self.host, pid), f"{PREFIX}:daemon:{self.host}"):
                raw = r.get(key)
                if raw and json.loads(raw).get("pid") == pid:
                    return dict(json.loads(raw))
        except (redis.RedisError, ValueError):
            return None
        return None

    def started_jobs(self) -> list[tuple[str, str | None]]:
        """(job id, worker name) of RQ's started registry, read without its cleanup."""
        r = self.r()
        q = Queue(QUEUE, connection=r)
        out = []
        for jid, _exe in StartedJobRegistry(queue=q).get_job_and_execution_ids(cleanup=False):
            try:
                out.append((jid, Job.fetch(jid, connection=r).worker_name))
            except Exception:  # noqa: BLE001 - gone meanwhile
                continue
        return out

    def job_holding(self, zone: str, rel: str) -> str | None:
        r = self.r()
        for jid, worker in self.started_jobs():
            try:
                job = Job.fetch(jid, connection=r)
                rec = job.args[0]
            except Exception:  # noqa: BLE001
                continue
            if rec.get("zone", {}).get("name") == zone and any(f[0] == rel if isinstance(f, list | tuple)
                                                                else f.get("rel") == rel
                                                                for f in rec.get("files", [])):
                return worker
        return None

    def part_in_flight(self, zone: str, rel: str) -> bool:
        from irods.models import Collection, DataObject

        z = self.zones[zone]
        t = names.target_for(z.collection, rel)
        try:
            with self.irods.session() as s:
                rows = list(s.query(DataObject.name).filter(Collection.name == t.collection)
                            .filter(DataObject.name == t.part_name))
            return bool(rows)
        except Exception:  # noqa: BLE001 - the collection may not exist yet
            return False

    # -- faults ---------------------------------------------------------------------------------------
    def apply(self, n: int, f: Fault) -> None:
        self.frng = random.Random(f"{self.o.seed}:fault:{n}")  # choices made while applying it
        p = f.params
        k = f.kind
        if k in chaos_faults.FAULTS:
            chaos_faults.FAULTS[k](self, p)
        else:
            getattr(self, "f_" + k.replace("-", "_"))(p)
        self.res.faults[k] += 1

    def f_daemon_kill(self, p: dict[str, Any]) -> None:
        with self.lock:
            self.procs["daemon"].kill9()
        time.sleep(p["down"])
        with self.lock:
            self.procs["daemon"].start()

    def _kill_workers(self, idx: list[int], down: float) -> None:
        with self.lock:
            for i in idx:
                self.procs[f"worker-{i}"].kill9()
        time.sleep(down)
        with self.lock:
            for i in idx:
                self._new_worker(i)

    def f_worker_kill(self, p: dict[str, Any]) -> None:
        idx = self.frng.sample(range(WORKERS), p["count"])
        self._kill_workers(idx, p["down"])

    def _large_put(self, zone: str, wait: float) -> tuple[str, str | None, bool]:
        """Write one more 40 MiB file, wait until a worker's put of it is under way (its temporary object
        exists), then `wait` seconds more; (rel, the worker's name, caught in flight)."""
        self.large_extra += 1
        fp = FilePlan(zone, f"large/fault-{self.large_extra:02d}.bin", LARGE)
        self.write_file(fp)
        deadline = time.monotonic() + 60
        worker = None
        while time.monotonic() < deadline:
            worker = self.job_holding(zone, fp.rel)
            if worker and self.part_in_flight(zone, fp.rel):
                time.sleep(wait)
                return fp.rel, worker, True
            time.sleep(0.05)
        return fp.rel, worker, False

    def f_worker_kill_large(self, p: dict[str, Any]) -> None:
        rel, worker, caught = self._large_put(p["zone"], min(p["wait"], 0.2))
        idx = [int(worker.split("-")[1][1:])] if caught and worker and worker.startswith("chaos-w") else []
        if idx:
            self.res.large_kills_in_flight += 1
        else:
            self.res.notes.append(f"worker-kill-large: the put of {rel} was not caught in flight; "
                                  "killed a random worker instead")
            idx = [self.frng.randrange(WORKERS)]
        self._kill_workers(idx, 0.5)

    def _redis_kill(self, down: float, wipe: bool) -> None:
        self.redis.stop(kill=True)
        if wipe:
            for name in ("appendonlydir", "dump.rdb", "appendonly.aof"):
                path = self.redis.workdir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        time.sleep(down)
        self.redis.start()

    def f_redis_aof(self, p: dict[str, Any]) -> None:
        self._redis_kill(p["down"], wipe=False)

    def f_redis_empty(self, p: dict[str, Any]) -> None:
        self._redis_kill(p["down"], wipe=True)

    def f_irods_refuse(self, p: dict[str, Any]) -> None:
        self.irods.refuse_connections(True)
        self.irods.drop_connections()
        try:
            time.sleep(p["hold"])
        finally:
            self.irods.refuse_connections(False)

    def f_irods_drop(self, p: dict[str, Any]) -> None:
        if p["large"]:
            rel, _worker, caught = self._large_put(p["zone"], min(p["wait"], 0.2))
            if caught:
                self.res.large_drops_in_flight += 1
            else:
                self.res.notes.append(f"irods-drop: the put of {rel} was not caught in flight")
        self.irods.drop_connections()

    def f_irods_delay(self, p: dict[str, Any]) -> None:
        self.irods.set_delay(p["seconds"])
        try:
            time.sleep(p["hold"])
        finally:
            self.irods.set_delay(0)

    def f_irods_fail(self, p: dict[str, Any]) -> None:
        self.irods.fail_next(p["api"], count=p["count"], error=p["error"], after_bytes=p.get("after_bytes"))
        self.injected_errors.add(p["error_name"])

    def f_inotify_overflow(self, p: dict[str, Any]) -> None:
        if self.res.inotify_skipped:
            raise SkipFault(self.res.inotify_skipped)
        try:
            self.sysctl_orig = SYSCTL.read_text().strip()
            SYSCTL.write_text("64\n")
        except OSError as e:
            self.res.inotify_skipped = f"cannot write {SYSCTL}: {e}"
            raise SkipFault(self.res.inotify_skipped) from None
        try:
            with self.lock:
                self.procs["daemon"].kill9()
                self.procs["daemon"].start()  # its new inotify instance has a queue of 64 events
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if self.daemon_status():
                    break
                time.sleep(0.2)
            self.burst_no += 1
            # the daemon stalls (SIGSTOP, as a process that is not scheduled for a moment) while the burst
            # is written: its reader thread keeps up with a quick writer on an idle machine otherwise
            daemon_pid = self.procs["daemon"].p.pid  # type: ignore[union-attr]
            os.kill(daemon_pid, signal.SIGSTOP)
            try:
                self._burst(p["files"])
            finally:
                os.kill(daemon_pid, signal.SIGCONT)
            time.sleep(3.0)
            st = self.daemon_status()
            seen = int(st.get("overflows", 0)) if st else 0
            self.res.overflows_seen += 1 if seen else 0
            if not seen:
                self.res.notes.append(f"inotify-overflow #{self.burst_no}: the daemon reported no overflow")
        finally:
            SYSCTL.write_text(self.sysctl_orig + "\n")
            with self.lock:  # a daemon with an ordinary queue again
                self.procs["daemon"].kill9()
                self.procs["daemon"].start()

    def _burst(self, n: int) -> None:
        for i in range(n):
            zone = ZONES[i % len(ZONES)]
            # into the zone's top directory, which is watched (a new directory's files make no events
            # until the daemon has walked it and placed its watch)
            self.write_file(FilePlan(zone, f"burst{self.burst_no:02d}-{i:04d}.txt", self.frng.randint(0, 2048)))

    # -- drain and check ------------------------------------------------------------------------------
    def failed_lists(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        r = self.r()
        for z in self.zones:
            out[z] = {os.fsdecode(x) for x in r.hkeys(keys.failed_key(PREFIX, z))}
        return out

    def wait_drained(self, timeout: float, failed_ok: bool) -> float | None:
        """Seconds until drained (tests/chaos/drain.py: files in iRODS or, with failed_ok, listed failed;
        deletes and moves done; nothing deferred, handed back, queued or running); None on timeout."""
        return chaos_drain.wait_drained(self, timeout, failed_ok)

    def register_version(self, zone: str, rel: str, e: Expected) -> None:
        """A version of a reused name was written (the same-name writer)."""
        with self.lock:
            self.expected[(zone, rel)] = e
            self.versions.setdefault((zone, rel), []).append(e)

    def same_name_busy(self) -> bool:
        return self.same_thread is not None and self.same_thread.is_alive()

    def logged_failures(self) -> list[tuple[str, str, str]]:
        """(zone, landing path, reason) of every `failed to ingest` record in the workers' logs."""
        out = []
        for log_file in sorted(self.logs.glob("worker-*.log")):
            for line in log_file.read_text(errors="replace").splitlines():
                if "failed to ingest" not in line:
                    continue
                fields = {k: v[1:-1].replace('\\"', '"') if v.startswith('"') else v
                          for k, v in FIELD.findall(line)}
                reason = fields.get("INGEST_RESULT", "")
                if reason.startswith("failed: "):
                    out.append((fields.get("INGEST_ZONE", "?"), fields.get("INGEST_PATH", "?"), reason[8:]))
        return out

    def explain(self, reason: str) -> bool:
        return any(name in reason for name in self.injected_errors)

    def run(self) -> Result:
        t_start = time.monotonic()
        self.injected_errors: set[str] = set()
        o = self.o
        plan = plan_files(self.rng, o.files, o.large)
        outage = o.outage if o.outage is not None else \
            (chaos_faults.retry_budget(RETRIES, BACKOFF, BACKOFF_MAX) + 7.0 if o.short else OUTAGE)
        faults = plan_faults(self.rng, o.faults, o.short, outage, o.kinds)
        try:
            self.sysctl_orig = SYSCTL.read_text().strip()
        except OSError:
            self.sysctl_orig = None
        monitor = threading.Thread(target=self.monitor, daemon=True)
        try:
            self.setup()
            monitor.start()
            est = sum(f.gap for f in faults) + len(faults) * (2.5 if o.short else 4.0) \
                + sum(f.params.get("hold", 0) for f in faults if f.kind in chaos_faults.FAULTS)
            written = threading.Event()
            wt = threading.Thread(target=self.writer, args=(plan, est * 0.8, written), daemon=True)
            wt.start()
            self.start_same_names(est * 0.8, outage)
            log(f"seed {o.seed}: {len(plan)} files over ~{est * 0.8:.0f}s, {len(faults)} faults")
            for n, f in enumerate(faults, 1):
                time.sleep(f.gap)
                log(f"fault {n}/{len(faults)}: {f.kind} {f.params}")
                try:
                    self.apply(n, f)
                except SkipFault as e:
                    self.res.notes.append(f"{f.kind} skipped: {e}")
            wt.join()
            self.irods.reset_faults()  # a fail_next still armed would fire during the drain
            self.res.fail_calls_fired = self.irods.counters().get("faults_injected", 0)
            t_last = time.monotonic()
            log(f"last fault done after {t_last - t_start:.0f}s; waiting for the drain "
                f"(at most {o.drain_timeout:.0f}s)")
            d = self.wait_drained(o.drain_timeout, failed_ok=True)
            self.res.drain_seconds = d
            # `status` exits 1 when it lists failed files (2 and up: it could not answer)
            sp = subprocess.run(self.exe + ["status", "--json"], cwd=REPO, capture_output=True, text=True)
            if sp.returncode not in (0, 1):
                raise RuntimeError(f"irods-ingestd status exited with {sp.returncode}: {sp.stderr[-2000:]}")
            st = json.loads(sp.stdout)
            for zname, z in st["zones"].items():
                for ff in z["failed_files"]:
                    item = (zname, ff["path"], str(ff.get("reason")))
                    self.res.failures.append(item)
                    if not self.explain(item[2]):
                        self.res.unexplained_failures.append(item)
            for item in self.logged_failures():
                self.res.logged_failures.append(item)
                if not self.explain(item[2]):
                    self.res.unexplained_failures.append(item)
            if self.res.failures:
                log(f"{len(self.res.failures)} files listed as failed; `irods-ingestd retry`, then drain again")
                subprocess.run(self.exe + ["retry"], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                               stderr=open(self.logs / "retry.log", "ab"))
                self.res.retry_drain_seconds = self.wait_drained(o.drain_timeout, failed_ok=False)
                self.res.drained = d is not None and self.res.retry_drain_seconds is not None
            else:
                self.res.drained = d is not None
            # the checks
            self.res.files = len(self.expected)
            self.res.bytes = sum(e.size for e in self.expected.values())
            with self.irods.session() as s:
                objs = list_objects(s, self.root_coll)
                marked = superseded_objects(s, self.root_coll)
            fnd = verify(objs, list(self.expected.values()), self.zones, self.root_coll, versions=self.versions,
                         superseded=marked)
            self.extra.handed_back, self.extra.handed_back_files = chaos_faults.count_handed_back(self.logs)
            r = self.r()
            q = Queue(QUEUE, connection=r)
            fnd.jobs_started = StartedJobRegistry(queue=q).get_job_count(cleanup=False)
            fnd.jobs_waiting = q.count
            fnd.jobs_failed = FailedJobRegistry(queue=q).get_job_count(cleanup=False)
            for z in self.zones:
                fnd.failed_listed += [f"{z}:{x}" for x in self.failed_lists()[z]]
                self.res.ledger_queued_after += int(r.hget(keys.stats_key(PREFIX, z), "queued") or 0)
            self.res.findings = fnd
            if not self.res.ok:
                self.diagnose(fnd)
        finally:
            if self.same_writer is not None:
                self.same_writer.stop.set()
                self.res.same_name = self.same_writer.stats
                self.res.notes += self.same_writer.notes
            self.stop_monitor.set()
            if self.sysctl_orig is not None:
                try:
                    if SYSCTL.read_text().strip() != self.sysctl_orig:
                        SYSCTL.write_text(self.sysctl_orig + "\n")
                except OSError:
                    pass
            if monitor.is_alive():
                monitor.join(5)
            for p in self.procs.values():
                p.stop()
            self.irods.stop()
            self.redis.stop()
            self.res.runtime = time.monotonic() - t_start
        if self.res.ok and not o.keep_data:
            for data in (self.dir / "landing", self.dir / "moved", self.irods.vault):
                shutil.rmtree(data, ignore_errors=True)
        return self.res

    def start_same_names(self, window: float, outage: float) -> None:
        """The same-name writer of the delete zone (tests/chaos/samename.py), in its own thread."""
        plans = plan_same_names(random.Random(f"{self.o.seed}:same-name"), self.o.same_names, window)
        if not plans:
            return
        # a version may wait out the outage, then the daemon's resettle and the after_hold
        self.same_writer = SameNameWriter(self.zones["delete"], self.o.seed, plans, self.register_version,
                                          self.irods.session, wait_limit=outage + 90.0)
        self.same_thread = threading.Thread(target=self.same_writer.run, args=(time.monotonic(),), daemon=True)
        self.same_thread.start()

    def diagnose(self, fnd: Findings) -> None:
        """For each lost or wrong file: what the ledger says and whether a temporary object is there."""
        from irods_ingestd.ledger import Ledger

        led = Ledger(self.r(), PREFIX)
        lines = []
        for path in ([x.split(" (")[0] for x in fnd.lost] + [w.split(":")[0] for w in fnd.wrong])[:30]:
            for z in self.zones.values():
                if path.startswith(z.collection + "/"):
                    rel = path[len(z.collection) + 1:]
                    e = led.get(z.name, rel)
                    landing = (z.landing / rel).exists()
                    moved = bool(z.move_to and (z.move_to / rel).exists())
                    lines.append(f"  {z.name}:{rel}: ledger {e}; landing file {'present' if landing else 'absent'}"
                                 + (f", moved copy {'present' if moved else 'absent'}" if z.move_to else ""))
        if lines:
            (self.logs / "diagnosis.txt").write_text("\n".join(lines) + "\n")
            self.res.notes.append(f"per-file diagnosis of lost/wrong files in {self.logs / 'diagnosis.txt'}")


class SkipFault(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--files", type=int, default=None, help="files written by the writer (default 2000; "
                    "300 with --short); inotify bursts and large-put faults add more")
    ap.add_argument("--faults", type=int, default=None, help="faults injected (default 55; 18 with --short)")
    ap.add_argument("--short", action="store_true", help="the CI version: a few hundred files, ~18 faults")
    ap.add_argument("--drain-timeout", type=float, default=None, help="seconds (default 600; 150 with --short)")
    ap.add_argument("--job-timeout", default="1h", help="[queue].job_timeout of the campaign's config (the "
                    "product's default: a killed worker's job is found by its missing heartbeat, not by this)")
    ap.add_argument("--workdir", help="run directory (default: a new one under $TMPDIR)")
    ap.add_argument("--keep-data", action="store_true", help="keep landing, moved and vault data after a pass")
    ap.add_argument("--outage", type=float, default=None, help="seconds of the iRODS outage (default 120; with "
                    "--short a little longer than the workers' retry budget)")
    ap.add_argument("--same-names", type=int, default=None, help="reused names in the delete zone (default 40; "
                    "8 with --short)")
    ap.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="the fault kinds to draw from, comma-"
                    f"separated (default: all but {', '.join(sorted(OPTIONAL))}): " + ", ".join(KINDS))
    a = ap.parse_args(argv)
    kinds = tuple(k.strip() for k in a.kinds.split(",") if k.strip())
    if not kinds or set(kinds) - set(KINDS):
        ap.error(f"--kinds: unknown kind(s) {', '.join(sorted(set(kinds) - set(KINDS)))}; known: {', '.join(KINDS)}")
    o = Options(seed=a.seed, short=a.short, job_timeout=a.job_timeout, workdir=a.workdir, keep_data=a.keep_data,
                outage=a.outage, kinds=kinds)
    o.same_names = a.same_names if a.same_names is not None else (8 if a.short else 40)
    o.files = a.files if a.files is not None else (300 if a.short else 2000)
    o.faults = a.faults if a.faults is not None else (18 if a.short else 55)
    o.large = 1 if a.short else 4
    o.drain_timeout = a.drain_timeout if a.drain_timeout is not None else (150.0 if a.short else 600.0)
    res = Campaign(o).run()
    print(report(res), flush=True)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
