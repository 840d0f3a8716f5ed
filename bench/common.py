"""Shared pieces of the benchmarks: services (Redis, iRODS), configs, processes, data, results."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.irods_server.harness import IrodsServerProcess
from tests.irods_server.pytest_plugin import ENV_VAR, PASSWORD_VAR, RealIrodsServer
from tests.redis_harness import RedisServerProcess

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ZONE_PREFIX = "ingestd"


@dataclass
class Services:
    """Redis plus the iRODS test server (or a real iRODS from INGESTD_TEST_IRODS_ENV)."""

    tmp: Path
    redis: RedisServerProcess = field(init=False)
    irods: Any = field(init=False)
    real_irods: bool = False

    def __post_init__(self) -> None:
        self.redis = RedisServerProcess(self.tmp / "redis", tcp=True)  # automated-ingest needs TCP
        env_file = os.environ.get(ENV_VAR)
        if env_file:
            self.irods = RealIrodsServer(Path(env_file), os.environ.get(PASSWORD_VAR, ""))
            self.real_irods = True
        else:
            self.irods = IrodsServerProcess(self.tmp / "irods")

    def start(self) -> None:
        self.redis.start()
        self.irods.start()
        self.env_file = self.irods.write_env_file(self.tmp / "irods_environment.json")
        self.pw_file = self.tmp / "irods-password"
        self.pw_file.write_text(self.irods.password + "\n")
        self.pw_file.chmod(0o600)

    def stop(self) -> None:
        self.irods.stop()
        self.redis.stop()

    def describe(self) -> str:
        kind = "real iRODS" if self.real_irods else "iRODS test server (pure Python, one process)"
        return f"{kind} at {self.irods.host}:{self.irods.port}; redis-server {self.redis.tcp_url} + unix socket"

    @property
    def home(self) -> str:
        return self.irods.home

    def session(self) -> Any:
        return self.irods.session()

    def flush_redis(self) -> None:
        self.redis.client().flushall()

    def remove_collection(self, coll: str) -> None:
        """Remove a contender's target collection (keeps the vault from growing run after run)."""
        with self.session() as s:
            try:
                s.collections.remove(coll, recurse=True, force=True)
            except Exception as e:  # noqa: BLE001 - best effort
                print(f"    (could not remove {coll}: {type(e).__name__}: {e})")

    def count_objects(self, coll: str) -> tuple[int, int]:
        """(objects, bytes) below a collection, by GenQuery."""
        from irods.column import Like
        from irods.models import Collection, DataObject

        n = nbytes = 0
        with self.session() as s:
            for c in (Collection.name == coll, Like(Collection.name, coll + "/%")):
                q = s.query(DataObject.name, DataObject.size, Collection.name).filter(c)
                for row in q:
                    if row[DataObject.name].endswith(".part"):
                        continue
                    n += 1
                    nbytes += int(row[DataObject.size])
        return n, nbytes


def write_config(path: Path, svc: Services, zones: list[dict[str, Any]], queue: str = "bench",
                 log_level: str = "info", **queue_opts: Any) -> Path:
    lines = [f'log_level = "{log_level}"', "", "[redis]", f'url = "{svc.redis.url}"', "", "[irods]",
             f'environment_file = "{svc.env_file}"', f'password_file = "{svc.pw_file}"', "", "[queue]",
             f'name = "{queue}"']
    for k, v in queue_opts.items():
        lines.append(f"{k} = {json.dumps(v)}")
    for z in zones:
        lines += ["", "[[zone]]"]
        for k, v in z.items():
            lines.append(f"{k} = {json.dumps(v)}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


class Procs:
    """Child processes started by a benchmark; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(log, "ab") as f:
            p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                 stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def ingestd(self, cfg: Path, log: Path, *args: str) -> subprocess.Popen:
        return self.start([PY, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args], log)

    def stop(self, timeout: float = 30) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(pred: Any, timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)


def wait_workers(r: redis.Redis, n: int, timeout: float = 30) -> bool:
    from rq import Worker

    return bool(wait_until(lambda: len(Worker.all(connection=r)) >= n, timeout, 0.1))


def daemon_status(r: redis.Redis) -> dict[str, Any] | None:
    raw = r.get(f"{ZONE_PREFIX}:daemon:{socket.gethostname()}")
    return json.loads(raw) if raw else None


def make_files(root: Path, ndirs: int, per_dir: int, size: int, prefix: str = "f") -> tuple[int, int]:
    """ndirs directories of per_dir files of `size` random bytes; (files, bytes)."""
    n = 0
    for d in range(ndirs):
        dd = root / f"d{d:04d}"
        dd.mkdir(parents=True, exist_ok=True)
        for i in range(per_dir):
            data = os.urandom(size) if size else b""
            fd = os.open(dd / f"{prefix}{i:06d}.dat", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if data:
                    os.write(fd, data)
            finally:
                os.close(fd)
            n += 1
    return n, n * size


def make_empty_tree(root: Path, ndirs: int, per_dir: int) -> int:
    """Empty files, cheaply (mknod-free: O_CREAT and close)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for d in range(ndirs):
        dd = os.path.join(root, f"d{d:04d}")
        os.makedirs(dd, exist_ok=True)
        for i in range(per_dir):
            os.close(os.open(f"{dd}/e{i:06d}", flags, 0o644))
    return ndirs * per_dir


def list_tree(root: Path) -> list[tuple[str, int, int]]:
    """(rel, size, mtime_ns) of every regular file below root."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, root), st.st_size, st.st_mtime_ns))
    return out


def mark_done_pipelined(r: redis.Redis, zone: str, files: Any, chunk: int = 5000) -> int:
    """Put files in the ledger as ingested, with Ledger.mark_done over a pipeline (the real layout)."""
    from irods_ingestd.ledger import Ledger

    n = 0
    pipe = r.pipeline(transaction=False)
    led = Ledger(pipe, ZONE_PREFIX)  # type: ignore[arg-type] # a pipeline queues the same commands
    sha = b"\x01" * 32
    for rel, size, mtime in files:
        led.mark_done(zone, rel, size, mtime, sha)
        n += 1
        if n % chunk == 0:
            pipe.execute()
    pipe.execute()
    return n


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> str:
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model})"


def vm(pid: int, key: str = "VmHWM") -> int:
    """A /proc/PID/status memory figure in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Row:
    bench: str
    what: str
    value: str
    goal: str = ""
    verdict: str = ""  # PASS | MISS | "" (informational) | FAIL (a run that did not complete)


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, bench: str, what: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        row = Row(bench, what, value, goal, verdict)
        self.rows.append(row)
        print(f"  {what}: {value}" + (f"   [{goal}: {verdict}]" if goal else ""), flush=True)

    def fail(self, bench: str, what: str, why: str) -> None:
        self.rows.append(Row(bench, what, why, "", "FAIL"))
        print(f"  {what}: NOT COMPLETED: {why}", flush=True)

    def table(self) -> str:
        if not self.rows:
            return "(no results)"
        w = [max(len(getattr(r, k)) for r in self.rows) for k in ("bench", "what", "value", "goal")]
        w = [max(a, len(b)) for a, b in zip(w, ("bench", "measure", "value", "goal"), strict=True)]
        head = f"{'bench':<{w[0]}}  {'measure':<{w[1]}}  {'value':<{w[2]}}  {'goal':<{w[3]}}  verdict"
        out = [head, "-" * len(head)]
        for r in self.rows:
            out.append(f"{r.bench:<{w[0]}}  {r.what:<{w[1]}}  {r.value:<{w[2]}}  {r.goal:<{w[3]}}  {r.verdict}")
        return "\n".join(out)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]
