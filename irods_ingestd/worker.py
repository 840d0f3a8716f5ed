"""The RQ worker: non-forking, so one iRODS session serves job after job.

``run_worker(config)`` runs an :class:`IngestWorker` (an ``rq.SimpleWorker``) on the config's queue.

* SIGTERM / SIGINT: RQ's warm shutdown: the running job finishes, then the worker exits. A second
  signal is a cold shutdown. Under systemd use ``KillMode=mixed`` so only the main process gets it.
* Heartbeats: a SimpleWorker runs the job in its main thread and would not refresh its heartbeat until
  the job ends, so the started-job registry would only notice a killed worker after the job timeout.
  Here a thread refreshes the worker's, the job's and the execution's heartbeat every
  ``job_monitoring_interval`` seconds (10) with a TTL of three intervals + 5 s, so the started-job
  registry's cleanup (another worker's maintenance) finds the job of a killed worker ~35 s after its
  death instead of after ``job_timeout``.
* Jobs without their own timeout get ``[queue].job_timeout``.
* Registry maintenance (which is what requeues or fails an abandoned job) runs every
  ``maintenance_interval`` (60 s, RQ's default is 10 min); an idle worker wakes up for it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from . import metrics, tasks
from .config import Config

log = logging.getLogger(__name__)

JOB_MONITORING_INTERVAL = 10
HOSTNAME_ENV = "IRODS_INGESTD_HOSTNAME"  # the host name a worker reports (default: the machine's)


def hostname() -> str:
    """The host name this worker goes by: $IRODS_INGESTD_HOSTNAME, else the machine's."""
    return os.environ.get(HOSTNAME_ENV) or socket.gethostname()


class IngestWorker(SimpleWorker):
    """A SimpleWorker that keeps its heartbeat alive while a job runs."""

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Three missed beats (and a few seconds) and the job counts as abandoned."""
        return int(3 * self.job_monitoring_interval + 5)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.job_monitoring_interval):
                try:
                    self.maintain_heartbeats(job, execution)
                except Exception as e:  # noqa: BLE001 - Redis away for a moment; try again next time
                    log.debug("heartbeat failed: %s", e)

        t = threading.Thread(target=beat, name="rq-heartbeat", daemon=True)
        t.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            t.join(5)
        self.set_state("idle")


def make_queue_class(default_timeout: float) -> type[Queue]:
    class IngestQueue(Queue):
        DEFAULT_TIMEOUT = int(default_timeout)

    return IngestQueue


def run_worker(config: Config, queue_name: str | list[str] | None = None, burst: bool = False, name: str | None = None,
               job_monitoring_interval: int = JOB_MONITORING_INTERVAL, maintenance_interval: int = 60,
               **work_kwargs: Any) -> bool:
    """Run a worker until stopped (or, with burst, until the queue is empty); True if it did any work.
    queue_name: a queue, or queues taken from in this order (e.g. the walk queue and the ingest queue)."""
    ctx = tasks.make_context(config)
    tasks.set_context(ctx)
    served = metrics.serve_worker(config)  # [metrics].worker_listen (+ the instance number)
    queue_class = make_queue_class(config.queue.job_timeout)
    wanted = [queue_name] if isinstance(queue_name, str) else list(queue_name or [config.queue.name])
    queues = [queue_class(q, connection=ctx.redis) for q in wanted]
    base_name = name or f"ingestd-{hostname()}-{os.getpid()}"
    worked = False
    restarts = 0
    try:
        while True:
            # a worker that died of an error may still be registered under its name until its TTL runs out
            worker_name = base_name if restarts == 0 else f"{base_name}-r{restarts}"
            worker: IngestWorker | None = None
            try:
                worker = IngestWorker(queues, connection=ctx.redis, name=worker_name, queue_class=queue_class,
                                      job_monitoring_interval=job_monitoring_interval,
                                      maintenance_interval=maintenance_interval,
                                      worker_ttl=maintenance_interval + 15)
                log.info("worker %s on queue %s (iRODS session reused across jobs)", worker_name,
                         ", ".join(q.name for q in queues))
                worked = worker.work(burst=burst, with_scheduler=False, logging_level=_rq_level(),
                                     **work_kwargs) or worked
            except (redis.RedisError, ValueError) as e:  # Redis away while starting or registering
                log.error("worker %s could not run: %s", worker_name, e)
            if burst or (worker is not None and _stop_was_requested(worker)):
                if not burst:
                    log.info("worker %s stopped on request (warm shutdown: no job was left running)", worker_name)
                return worked
            # RQ's loop ends on an error it does not handle (Redis going away mid-job, most often): the
            # running job, if any, is retried after its heartbeat expires. Wait for Redis, then go on.
            restarts += 1
            delay = min(30.0, 2.0 * restarts)
            log.error("worker %s stopped on an error; starting again in %.0fs", worker_name, delay)
            if _wait_or_stop(delay):
                return worked
    finally:
        metrics.stop(served)
        ctx.sessions.cleanup()
        tasks.set_context(None)


def _stop_was_requested(worker: IngestWorker) -> bool:
    """SIGTERM/SIGINT reached RQ's handlers (an idle worker records only the date of the request)."""
    return bool(worker._stop_requested or getattr(worker, "_shutdown_requested_date", None))


def _wait_or_stop(seconds: float) -> bool:
    """Sleep, unless SIGTERM/SIGINT comes meanwhile; True if it did. The handler only sets a flag (a lock
    taken in a signal handler, as threading.Event.set does, deadlocks if the signal came while the main
    thread held it), and the sleep is taken in short steps."""
    stop: list[bool] = []

    def handler(signum: int, frame: object) -> None:
        stop.append(True)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        deadline = time.monotonic() + seconds
        while not stop and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.2))
        return bool(stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _rq_level() -> str:
    """RQ's own records: four lines a job at INFO ("Job OK", "result is kept ..."), which repeat what the
    per-file records say and cost the journal a line per few milliseconds under load; so WARNING, unless
    the log level is debug."""
    level = logging.getLogger().getEffectiveLevel()
    return "DEBUG" if level <= logging.DEBUG else logging.getLevelName(max(level, logging.WARNING))
