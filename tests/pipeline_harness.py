"""The whole pipeline in one test process: the daemon's loop in a thread, workers run in bursts.

Real Redis, the real iRODS test server (or a real iRODS), the real daemon and the real RQ worker class;
only the processes are folded into one so a test can look at everything.
"""

from __future__ import annotations

import time
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

    def __post_init__(self) -> None:
        self.root = self.tmp / "landing"
        self.root.mkdir(exist_ok=True)
        self.collection = f"{self.irods.home}/ingest-{self.tmp.name[-20:]}"
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
        tasks.set_context(None)

    def work(self) -> None:
        """One burst of a real worker in this (main) thread."""
        run_worker(self.cfg, burst=True, name=f"test-{time.monotonic_ns()}")

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
            out = {}
            q = s.query(Collection.name, DataObject.name, DataObject.size, DataObject.checksum)
            for row in q.filter(Collection.name == self.collection).all():
                out[f"{row[Collection.name]}/{row[DataObject.name]}"] = row
            from irods.column import Like

            for row in q.filter(Like(Collection.name, self.collection + "/%")).all():
                out[f"{row[Collection.name]}/{row[DataObject.name]}"] = row
            return out
        finally:
            s.cleanup()


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return str(v)
