"""The daemon's gauges: a snapshot of its state taken on its own thread every second (with the status
record), served by a collector on the scrape's thread, so a scrape never touches the daemon's structures.

Per zone: `irods_ingestd_zone_state{zone,state}` (1 for the zone's state: watching, polling, walking, lost,
starting), `irods_ingestd_zone_walking`, `irods_ingestd_settling_files`, and from the ledger
`irods_ingestd_queued_files`, `irods_ingestd_ingested_files`, `irods_ingestd_failed_files`; for the
daemon: `irods_ingestd_ready_files` (settled, waiting for room), `irods_ingestd_queue_jobs_waiting`,
`irods_ingestd_backlog_full`, `irods_ingestd_events_lost_total` (watcher overflows),
`irods_ingestd_files_skipped_total`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import metrics

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger(__name__)

STATES = ("starting", "watching", "polling", "walking", "lost")


class DaemonMetrics(Collector):
    """`start` serves the endpoint (if `[metrics].listen`), `update` takes the snapshot, `stop` ends it."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.server: metrics.Server | None = None
        self._snap: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._registered = True

    def start(self) -> None:
        addr = self.d.cfg.metrics.listen
        if not addr or self.d.once or self.server is not None:
            return
        self.server = metrics.serve(addr, self.d.cfg, "daemon")
        if self.server is not None:
            self.update()
            try:
                REGISTRY.register(self)
            except ValueError:  # another Daemon in this process (tests) exports its gauges already
                log.warning("metrics: another daemon of this process exports the daemon's gauges")
                self._registered = False

    def stop(self) -> None:
        if self.server is not None:
            if self._registered:
                REGISTRY.unregister(self)
            metrics.stop(self.server)
            self.server = None

    def update(self) -> None:
        """Take the snapshot (the daemon's thread; a Redis error leaves the ledger's numbers as they were)."""
        if self.server is None:
            return
        d = self.d
        zones = {name: {"state": zs.state, "walking": zs.walk is not None, "settling": d.settler.count(name)}
                 for name, zs in d.zones.items()}
        snap: dict[str, Any] = {"zones": zones, "ready": len(d.ready), "backlog_full": d.backlog_full(),
                                "overflows": d.counters.overflows, "skipped": d.counters.skipped}
        old = self._snap
        try:
            if d.health.down_since is not None:
                raise redis.ConnectionError("Redis is down")
            for name in zones:
                zones[name]["ledger"] = d.ledger.stats(name)
            snap["jobs_waiting"] = d.enqueuer.waiting_jobs()
        except redis.RedisError:
            for name in zones:
                zones[name]["ledger"] = old.get("zones", {}).get(name, {}).get("ledger", {})
            snap["jobs_waiting"] = old.get("jobs_waiting", 0)
        with self._lock:
            self._snap = snap

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            snap = self._snap
        if not snap:
            return
        zs = snap["zones"]
        state = GaugeMetricFamily("irods_ingestd_zone_state", "1 for the zone's state (watching, polling, "
                                  "walking, lost, starting)", labels=["zone", "state"])
        walking = GaugeMetricFamily("irods_ingestd_zone_walking", "A walk of the zone is in progress",
                                    labels=["zone"])
        settling = GaugeMetricFamily("irods_ingestd_settling_files", "Files waiting to be unchanged for settle",
                                     labels=["zone"])
        ledger = {k: GaugeMetricFamily(f"irods_ingestd_{name}_files", text, labels=["zone"]) for k, name, text in (
            ("queued", "queued", "Files queued (waiting for or in a worker), from the ledger"),
            ("done", "ingested", "Files recorded as ingested in the ledger"),
            ("failed", "failed", "Files recorded as failed (listed by status), from the ledger"))}
        for name, z in sorted(zs.items()):
            for s in STATES:
                state.add_metric([name, s], 1.0 if z["state"] == s else 0.0)
            walking.add_metric([name], float(z["walking"]))
            settling.add_metric([name], float(z["settling"]))
            for k, fam in ledger.items():
                if k in z.get("ledger", {}):
                    fam.add_metric([name], float(z["ledger"][k]))
        yield from (state, walking, settling, *ledger.values())
        yield GaugeMetricFamily("irods_ingestd_ready_files", "Settled files waiting for room in the backlog",
                                value=snap["ready"])
        yield GaugeMetricFamily("irods_ingestd_queue_jobs_waiting", "Jobs waiting in the RQ queue for a worker",
                                value=snap["jobs_waiting"])
        yield GaugeMetricFamily("irods_ingestd_backlog_full", "The backlog (max_backlog) is full",
                                value=float(snap["backlog_full"]))
        yield CounterMetricFamily("irods_ingestd_events_lost", "Times the watcher lost events (overflows)",
                                  value=snap["overflows"])
        yield CounterMetricFamily("irods_ingestd_files_skipped", "Files reported skipped (excluded kinds, errors)",
                                  value=snap["skipped"])
