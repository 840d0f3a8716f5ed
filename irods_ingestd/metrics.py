"""Prometheus metrics (prometheus_client): what the daemon and the workers count, and their endpoints.

Every metric is named ``irods_ingestd_*`` and labelled only by bounded values: the zone's name (from the
config), a result (the names of `ingest.results.SUMMARY_KEYS`), an adapter function (`api`) or an error's
class name; never by a file name. Counting is always on and costs a lock and an add; `[metrics]` only
decides whether an HTTP endpoint serves them (`serve`). The daemon's gauges come from a snapshot taken on
its own thread each second (:mod:`.metrics_daemon`), the iRODS calls are timed in the catalog adapter
(:mod:`.metrics_irods`), reachability is probed when scraped (:mod:`.metrics_probe`).

The README's "Metrics" section lists every metric; packaging/grafana/irods-ingestd.json shows them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server

from .config import Config
from .config_metrics import split_address

log = logging.getLogger(__name__)

INSTANCE_ENV = "IRODS_INGESTD_WORKER_INSTANCE"  # the systemd template unit sets it to %i

# seconds: a file's way from its last write to iRODS spans settle times, backlogs and large copies
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600)
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
WALK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)

# -- workers ------------------------------------------------------------------------------------------------
FILES = Counter("irods_ingestd_files", "Files a worker finished with, by zone and result "
                "(ingested, updated, already_present, failed, deferred, changed, vanished, ...)", ["zone", "result"])
BYTES = Counter("irods_ingestd_bytes", "Sizes of the files a worker finished with, by zone and result",
                ["zone", "result"])
QUEUE_LATENCY = Histogram("irods_ingestd_queue_latency_seconds",
                          "From queued to in iRODS (ingested or updated), by zone", ["zone"], buckets=LATENCY_BUCKETS)
INGEST_LATENCY = Histogram("irods_ingestd_ingest_latency_seconds", "From the landing file's last write (mtime) "
                           "to in iRODS (ingested or updated), by zone", ["zone"], buckets=LATENCY_BUCKETS)
IRODS_CALLS = Histogram("irods_ingestd_irods_call_seconds", "Calls of the iRODS catalog adapter, by function",
                        ["api"], buckets=CALL_BUCKETS)
IRODS_ERRORS = Counter("irods_ingestd_irods_call_errors", "Calls of the iRODS catalog adapter that raised, by "
                       "function and error class", ["api", "error"])
# -- the daemon ---------------------------------------------------------------------------------------------
QUEUED = Counter("irods_ingestd_files_queued", "Files the daemon handed to the queue, by zone", ["zone"])
SETTLE_LATENCY = Histogram("irods_ingestd_settle_latency_seconds", "From the landing file's last write (mtime) "
                           "to queued, by zone", ["zone"], buckets=LATENCY_BUCKETS)
WALKS = Histogram("irods_ingestd_walk_seconds", "Durations of full walks of a zone", ["zone"], buckets=WALK_BUCKETS)
# -- both -----------------------------------------------------------------------------------------------------
WEBHOOKS = Counter("irods_ingestd_webhooks", "Webhook notifications by event and outcome (sent, failed: given "
                   "up after the retries, dropped: the queue was full)", ["event", "outcome"])


def file_done(zone: str, result: str, size: int, mtime_ns: int, queued_at: float) -> None:
    """A worker finished with a file (`result`: a SUMMARY_KEYS value)."""
    FILES.labels(zone, result).inc()
    BYTES.labels(zone, result).inc(size)
    if result in ("ingested", "updated"):
        now = time.time()
        if queued_at > 0:
            QUEUE_LATENCY.labels(zone).observe(max(0.0, now - queued_at))
        INGEST_LATENCY.labels(zone).observe(max(0.0, now - mtime_ns / 1e9))


def files_queued(zone: str, files: Iterable[Any]) -> None:
    """The daemon handed these files (with `mtime_ns`) to the queue."""
    now = time.time()
    n = 0
    for f in files:
        SETTLE_LATENCY.labels(zone).observe(max(0.0, now - f.mtime_ns / 1e9))
        n += 1
    QUEUED.labels(zone).inc(n)


def walked(zone: str, seconds: float) -> None:
    WALKS.labels(zone).observe(seconds)


# -- endpoints ------------------------------------------------------------------------------------------------
Server = tuple[Any, Any]  # (WSGIServer, its thread)


def serve(addr: str, cfg: Config, role: str) -> Server | None:
    """Serve the process' metrics on `addr` (host:port) in a thread; None (logged) if it cannot."""
    from . import metrics_probe

    try:
        host, port = split_address(addr)
        server = start_http_server(port, host)
    except (OSError, ValueError) as e:
        log.error("metrics: the %s cannot serve metrics on %s: %s; going on without them", role, addr,
                  getattr(e, "strerror", None) or e)
        return None
    metrics_probe.install(cfg)
    log.info("metrics: the %s serves Prometheus metrics on http://%s/metrics", role, addr)
    return server


def stop(server: Server | None) -> None:
    if server is not None:
        httpd, thread = server
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def worker_address(cfg: Config) -> str | None:
    """worker_listen with the instance number ($IRODS_INGESTD_WORKER_INSTANCE) added to its port."""
    base = cfg.metrics.worker_listen
    if not base:
        return None
    host, port = split_address(base)
    raw = os.environ.get(INSTANCE_ENV, "").strip()
    if raw and not raw.isdigit():
        log.error("metrics: %s=%r is not a number; this worker serves no metrics (name worker units by "
                  "number, irods-ingestd-worker@1)", INSTANCE_ENV, raw)
        return None
    port += int(raw or 0)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_worker(cfg: Config) -> Server | None:
    addr = worker_address(cfg)
    return serve(addr, cfg, "worker") if addr else None


__all__ = ["REGISTRY", "serve", "serve_worker", "stop", "file_done", "files_queued", "walked"]
