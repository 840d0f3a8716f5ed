"""Helpers for daemon tests: a config in a temporary directory and the daemon's loop in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue

from irods_ingestd.config import Config, validate
from irods_ingestd.daemon import Daemon
from irods_ingestd.job import Batch


def make_config(tmp: Path, redis_url: str, zones: list[dict[str, Any]], **top: Any) -> Config:
    env = tmp / "irods_environment.json"
    if not env.exists():
        env.write_text('{"irods_host": "127.0.0.1", "irods_port": 1247, "irods_user_name": "rods", '
                       '"irods_zone_name": "tempZone"}')
    data: dict[str, Any] = {
        "redis": {"url": redis_url},
        "irods": {"environment_file": str(env)},
        "queue": {"name": "ingest-test"},
        "zone": zones,
    }
    for k, v in top.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k].update(v)
        else:
            data[k] = v
    return validate(data, source=str(tmp / "config.toml"))


class DaemonThread:
    """Runs Daemon.turn() in a thread (signals are the CLI's business, not the tests')."""

    def __init__(self, cfg: Config, r: redis.Redis) -> None:
        self.daemon = Daemon(cfg, r=r)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            self.daemon.start()
            while not self._stop.is_set():
                self.daemon.turn(max_wait=0.05)
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.error = e

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.daemon.close()
        if self.error:
            raise self.error


def queued(r: redis.Redis, queue: str = "ingest-test") -> list[tuple[str, str, int, int]]:
    """(zone, rel, size, mtime_ns) of every file in every job waiting in the queue."""
    out = []
    for job in Queue(queue, connection=r).get_jobs():
        b = Batch.from_record(job.args[0])
        out += [(b.zone.name, f.rel, f.size, f.mtime_ns) for f in b.files]
    return out


def wait_for(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)
