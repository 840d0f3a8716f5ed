"""The whole pipeline in one test process: the daemon's loop in a thread, workers run in bursts.

Real Redis, the real iRODS test server (or a real iRODS), the real daemon and the real RQ worker class;
only the processes are folded into one so a test can look at everything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from irods_ingestd import tasks
from irods_ingestd.config import Config, load
from irods_ingestd.ledger import Ledger
from irods_ingestd.worker import run_worker
from tests.daemon_harness import DaemonThread


@dataclass
class Pipeline:
    tmp: Path
    redis_url: str
    irods: Any  # IrodsServerProcess or RealIrodsServer
    zone: dict[str, Any] = field(default_factory=dict)
    name: str = "z"
    root: Path | None = None  # default tmp/landing

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = self.tmp / "landing"
        self.root.mkdir(exist_ok=True)
        # per session too (pid): concurrent sessions on one server share the test directories' names
        self.collection = f"{self.irods.home}/ingest-{os.getpid()}-{self.tmp.name[-20:]}"
        env = self.irods.write_env_file(self.tmp / "irods_environment.json")
        pw = self.tmp / "irods-password"
        pw.write_text(self.irods.password)
        pw.chmod(0o600)
        z = {"name": self.name, "path": str(self.root), "collection": self.collection, "settle": "0.3s",
             "rescan": "1s"}
        z.update(self.zone)
        lines = [f'[redis]\nurl = "{self.redis_url}"', f'[irods]\nenvironment_file = "{env}"\n'
                 f'password_file = "{pw}"', '[queue]\nname = "pipeline-test"\nretries = 2\nbackoff = "0.1s"']
        zl = ["[[zone]]"] + [f"{k} = {_toml(v)}" for k, v in z.items()]
        self.config_path = self.tmp / "config.toml"
        self.config_path.write_text("\n".join(lines + zl) + "\n")
        self.config_path.chmod(0o600)
        self.cfg: Config = load(self.config_path)
        self.r = redis.Redis.from_url(self.redis_url)
        self.ledger = Ledger(self.r)
        self.daemon: DaemonThread | None = None

    def __enter__(self) -> Pipeline:
        self.daemon = DaemonThread(self.cfg, self.r).__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.daemon:
            self.daemon.stop()
            self.daemon = None
        tasks.set_context(None)

    def cleanup(self) -> None:
        """Remove the zone's collection from iRODS (call once the test looked at it)."""
        from tests.landing import remove_collections

        remove_collections(self.irods, self.collection)

    def work(self) -> None:
        """One burst of a real worker in this (main) thread."""
        run_worker(self.cfg, burst=True, name=f"test-{time.monotonic_ns()}")

    def work_direct(self) -> int:
        """Run the queued jobs' ingest in this thread without RQ (e.g. under tests.privileges.fs_user):
        Redis and iRODS connections are opened before, so only the landing files are read inside."""
        from rq import Queue

        from irods_ingestd import ingest
        from irods_ingestd.job import Batch

        ctx = tasks.make_context(self.cfg)
        ctx.sessions.get()
        ctx.redis.ping()
        n = 0
        try:
            q = Queue(self.cfg.queue.name, connection=self.r)
            for job in q.get_jobs():
                with self._as_user():
                    ingest.ingest_batch(ctx, Batch.from_record(job.args[0]))
                q.remove(job)
                job.delete()
                n += 1
        finally:
            ctx.sessions.cleanup()
        return n

    def _as_user(self) -> Any:
        from contextlib import nullcontext

        return self.user_context() if self.user_context else nullcontext()

    user_context: Any = None

    def quiet(self) -> bool:
        d = self.daemon.daemon if self.daemon else None
        busy = d is not None and (len(d.settler) or d.ready or any(zs.walk for zs in d.zones.values()))
        return not busy and self.ledger.stats(self.name)["queued"] == 0

    def drain(self, timeout: float = 30.0, min_done: int = 0) -> None:
        """Run workers until nothing settles or waits, and at least min_done files are ingested."""
        deadline = time.monotonic() + timeout
        time.sleep(0.2)
        while time.monotonic() < deadline:
            self.work()
            if self.quiet() and self.ledger.stats(self.name)["done"] >= min_done:
                time.sleep(0.5)  # one more look: a rescan may find something
                self.work()
                if self.quiet():
                    return
            time.sleep(0.1)
        raise AssertionError(f"pipeline did not drain in {timeout}s: {self.ledger.stats(self.name)}")

    def objects(self) -> dict[str, Any]:
        """Logical path → data object, for everything under the zone's collection."""
        from irods.models import Collection, DataObject

        s = self.irods.session()
        try:
            from irods.column import Like

            def q():  # type: ignore[no-untyped-def]
                return s.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum)

            out = {}
            for cond in (Collection.name == self.collection, Like(Collection.name, self.collection + "/%")):
                # PRC's filter() changes the query it is called on; all() stops after one page: iterate
                for row in q().filter(cond):
                    out[f"{row[Collection.name]}/{row[DataObject.name]}"] = row
            return out
        finally:
            s.cleanup()


@contextmanager
def pipelines(tmp_path: Path, redis_url: str, server: Any, *, readable: bool = True,
              remove: Callable[[str], None] | None = None, **defaults: Any) -> Iterator[Callable[..., Pipeline]]:
    """The body of a test's `make_pipe` fixture: `make(**zone)` (or `make(server=other, **zone)`) gives a
    Pipeline of the zone `defaults` updated by `zone`, its landing directory readable by the iRODS server
    (register mode) unless `readable` is false. At the end every pipeline is stopped and its collection
    removed from iRODS (by `remove`, default: `remove_collections` on `server`)."""
    from tests.landing import remove_collections, server_readable

    made: list[Pipeline] = []

    def make(server: Any = None, **zone: Any) -> Pipeline:
        p = Pipeline(tmp_path, redis_url, server or default_server, zone={**defaults, **zone},
                     root=server_readable(tmp_path / "landing") if readable else None)
        made.append(p)
        return p

    default_server = server
    try:
        yield make
    finally:  # also when a test using it directly fails (the next run would find its objects)
        for p in made:
            p.__exit__(None, None, None)
        for coll in dict.fromkeys(p.collection for p in made):
            if remove is not None:
                remove(coll)
            else:
                remove_collections(default_server, coll)


def until(pipe: Pipeline, cond: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Run workers until cond() holds (deferred after-actions and completed directories come back through
    the daemon every 5 s)."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what or cond}"
        pipe.work()
        time.sleep(0.2)


def names(pipe: Pipeline) -> set[str]:
    """The objects of the zone's collection, relative to it."""
    return {p[len(pipe.collection) + 1:] for p in pipe.objects()}


def write(where: Path | Pipeline, rel: str, data: bytes | str | dict[str, Any]) -> Path:
    """A landing file (its directories made) below a root or a pipeline's landing directory; a dict is
    written as JSON."""
    root = where.root if isinstance(where, Pipeline) else where
    assert root is not None
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, dict):
        data = json.dumps(data)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)
