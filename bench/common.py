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
from tests.irods_server.pytest_plugin import CHOICE_VAR, ENV_VAR, LOCAL_DIR, PASSWORD_VAR, RealIrodsServer
from tests.redis_harness import RedisServerProcess

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ZONE_PREFIX = "ingestd"


IRODS_KINDS = ("real", "standin")


def real_irods_config() -> tuple[Path, str] | None:
    """(environment file, password) of the real iRODS the tests use: INGESTD_TEST_IRODS_ENV (password in
    INGESTD_TEST_IRODS_PASSWORD), else .irods-test/ written by .ci/irods.sh (`make irods`)."""
    env_file = os.environ.get(ENV_VAR)
    if env_file:
        return Path(env_file), os.environ.get(PASSWORD_VAR, "")
    local = LOCAL_DIR / "irods_environment.json"
    if local.is_file():
        pw = LOCAL_DIR / "password"
        return local, pw.read_text().strip() if pw.is_file() else ""
    return None


def default_irods_kind() -> str:
    """The real server unless INGESTD_TEST_IRODS=standin says otherwise (as for the tests)."""
    return "standin" if os.environ.get(CHOICE_VAR) == "standin" else "real"


def irods_problem(kind: str) -> str | None:
    """Why the iRODS of this kind cannot be used, or None."""
    if kind != "real":
        return None
    conf = real_irods_config()
    if conf is None:
        return (f"no real iRODS configured: run `make irods` (.ci/irods.sh writes {LOCAL_DIR}) or set {ENV_VAR} "
                f"and {PASSWORD_VAR}; or run against the stand-in with --irods standin")
    if not conf[0].is_file():
        return f"{conf[0]} (the real iRODS' environment file) does not exist"
    return None


@dataclass
class Services:
    """Redis plus iRODS: the real server (the default: the judge), or the project's test server when asked
    (`--irods standin`: a pure-Python stand-in, which can count API calls but is not what users run)."""

    tmp: Path
    irods_kind: str = "real"
    redis: RedisServerProcess = field(init=False)
    irods: Any = field(init=False)
    real_irods: bool = field(init=False, default=False)
    server_version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.irods_kind not in IRODS_KINDS:
            raise ValueError(f"irods must be one of {IRODS_KINDS}, not {self.irods_kind!r}")
        self.redis = RedisServerProcess(self.tmp / "redis", tcp=True)  # automated-ingest needs TCP
        if self.irods_kind == "real":
            conf = real_irods_config()
            if conf is None:
                raise RuntimeError(irods_problem(self.irods_kind))
            self.irods = RealIrodsServer(*conf)
            self.real_irods = True
        else:
            self.irods = IrodsServerProcess(self.tmp / "irods")

    def start(self) -> None:
        if self.real_irods:
            try:
                socket.create_connection((self.irods.host, self.irods.port), timeout=5).close()
            except OSError as e:
                raise RuntimeError(f"the real iRODS at {self.irods.host}:{self.irods.port} does not answer ({e}): "
                                   "start it with `bash ../shared/irods/install-irods.sh`") from e
        self.redis.start()
        self.irods.start()
        with self.session() as s:
            self.server_version = ".".join(str(x) for x in s.server_version)
        self.env_file = self.irods.write_env_file(self.tmp / "irods_environment.json")
        self.pw_file = self.tmp / "irods-password"
        self.pw_file.write_text(self.irods.password + "\n")
        self.pw_file.chmod(0o600)

    def stop(self) -> None:
        self.irods.stop()
        self.redis.stop()

    def describe(self) -> str:
        kind = "real iRODS" if self.real_irods else "iRODS test server (pure Python, one process)"
        return (f"{kind} {self.server_version} at {self.irods.host}:{self.irods.port} (zone {self.irods.zone}, "
                f"user {self.irods.user}); redis-server {self.redis.tcp_url} + unix socket")

    @property
    def home(self) -> str:
        return str(self.irods.home)

    def session(self) -> Any:
        return self.irods.session()

    def conn(self) -> dict[str, Any]:
        """iRODSSession keyword arguments (for sessions made in other threads or processes)."""
        i = self.irods
        if self.real_irods:
            return {**i.env, "password": i.password}
        return {"host": i.host, "port": i.port, "user": i.user, "password": i.password, "zone": i.zone}

    def flush_redis(self) -> None:
        self.redis.client().flushall()

    def remove_collection(self, coll: str) -> None:
        """Remove a contender's target collection and all in it, past the trash (the real server keeps
        everything between runs). Registered replicas outside the vault are only unregistered by the server
        ("Replica is not in a vault ... leaving it on disk as-is")."""
        with self.session() as s:
            try:
                if s.collections.exists(coll):
                    s.collections.remove(coll, recurse=True, force=True)
            except Exception as e:  # noqa: BLE001 - best effort, but said
                print(f"    (could not remove {coll}: {type(e).__name__}: {e})")

    def count_objects(self, coll: str) -> tuple[int, int, int]:
        """(objects, bytes, objects with a checksum) below a collection, by GenQuery (replicas counted once)."""
        from irods.column import Like
        from irods.models import Collection, DataObject

        seen: dict[str, tuple[int, bool]] = {}
        with self.session() as s:
            for c in (Collection.name == coll, Like(Collection.name, coll + "/%")):
                q = s.query(DataObject.name, DataObject.size, DataObject.checksum, Collection.name).filter(c)
                for row in q:
                    if row[DataObject.name].endswith(".part"):
                        continue
                    path = f"{row[Collection.name]}/{row[DataObject.name]}"
                    seen[path] = (int(row[DataObject.size]), bool(row[DataObject.checksum]))
        return len(seen), sum(v[0] for v in seen.values()), sum(1 for v in seen.values() if v[1])


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
    """Child processes started by a benchmark; stopped (SIGTERM, then SIGKILL) on exit. A process started
    with group=True leads its own process group, which is killed as a whole afterwards (Celery's pool)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.groups: set[int] = set()

    def start(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None,
              group: bool = False) -> subprocess.Popen:
        with open(log, "ab") as f:
            p = subprocess.Popen(args, stdout=f, stderr=subprocess.STDOUT, cwd=cwd or ROOT, env=env,
                                 stdin=subprocess.DEVNULL, start_new_session=group)
        self.procs.append(p)
        if group:
            self.groups.add(p.pid)
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
        for pgid in self.groups:  # whatever the leader left behind (pool children)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.procs = []
        self.groups = set()

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


def daemon_status(r: redis.Redis, pid: int | None = None) -> dict[str, Any] | None:
    """The daemon's status record: of the daemon with this pid if given. Keys are
    `{prefix}:daemon:{host}:{pid}` (or `{prefix}:daemon:{host}` in versions before daemonstatus.py)."""
    host = socket.gethostname()
    for key in r.scan_iter(f"{ZONE_PREFIX}:daemon:*"):
        raw = r.get(key)
        if not raw:
            continue
        try:
            d = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(d, dict):
            continue
        if pid is None or d.get("pid") == pid or ("pid" not in d and key == f"{ZONE_PREFIX}:daemon:{host}".encode()):
            return d
    return None


def clear_daemon_status(r: redis.Redis) -> None:
    """Delete every daemon status record (a previous daemon's must not be read as the next one's)."""
    for key in list(r.scan_iter(f"{ZONE_PREFIX}:daemon:*")):
        r.delete(key)


def zone_walked(r: redis.Redis, zone: str, pid: int | None = None) -> bool:
    """The daemon (of that pid) has finished its first walk of `zone`."""
    return int(((daemon_status(r, pid) or {}).get("zones", {}).get(zone) or {}).get("walks", 0)) >= 1


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
    led = Ledger(pipe, ZONE_PREFIX)  # a pipeline queues the same commands
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
