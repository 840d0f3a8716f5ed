"""Processes for the adversarial process- and server-fault tests (tests/integration/test_adv_faults*.py).

Daemons and workers run as child processes so a test can SIGKILL them. Workers here beat every second (a
killed worker's job is found abandoned ~8 s after its death instead of ~35 s) and can be told to kill
themselves at a precise point of an ingest:

- ``ADVF_KILL_AT_BYTES=N``: SIGKILL once N bytes of a copy were read (in the middle of a put);
- ``ADVF_LOCK_TTL=S``: the file locks it takes lapse S seconds after it stops renewing them (35 s in the
  product), so the file of a killed worker can be taken over sooner;
- ``ADVF_KILL_ON_REL=REL``: SIGKILL whenever it starts on that file (a file that crashes every worker);
- ``ADVF_KILL_AFTER_ATTEMPT=1``: SIGKILL right after a file's attempt succeeded (the object has its final
  name, verified, with its AVUs) and before the ledger records it.

Run as ``python -m tests.adv_faults_harness CONFIG NAME``.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEARTBEAT = 1  # seconds between a worker's heartbeats here (the product's default is 10)


class Proc:
    """A child process (its stderr in a file) that can be killed, restarted and read."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log, self.env = argv, log, env
        self.p: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> Proc:
        f = open(self.log, "a")
        env = {**os.environ, **(self.env or {})}
        self.p = subprocess.Popen(self.argv, stderr=f, stdout=subprocess.DEVNULL, cwd=ROOT, env=env)
        f.close()
        return self

    @property
    def alive(self) -> bool:
        return self.p is not None and self.p.poll() is None

    def kill9(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.kill()
            self.p.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.p is None:
            return None
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        return self.p.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def cli(cfg: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args]


def daemon(cfg: Path, log: Path) -> Proc:
    return Proc(cli(cfg, "run"), log)


def worker(cfg: Path, log: Path, name: str, **env: str) -> Proc:
    return Proc([sys.executable, "-m", "tests.adv_faults_harness", str(cfg), name], log, env)


def wait(cond: Callable[[], Any], timeout: float, what: str | Callable[[], str], every: float = 0.2) -> Any:
    """Poll cond() until it is true; `what` (or what()) says what was awaited when it times out."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for " \
                                            f"{what() if callable(what) else what}"
        time.sleep(every)


def objects(server: Any, collection: str) -> dict[str, tuple[str, int, int]]:
    """rel → (checksum, data id, replica count) of every data object at or below `collection`."""
    from irods.column import Like
    from irods.models import Collection, DataObject

    out: dict[str, tuple[str, int, int]] = {}
    with server.session() as s:
        for cond in (Collection.name == collection, Like(Collection.name, collection + "/%")):
            q = s.query(Collection.name, DataObject.name, DataObject.id, DataObject.checksum,
                        DataObject.replica_number).filter(cond)
            for row in q:
                rel = f"{row[Collection.name]}/{row[DataObject.name]}"[len(collection) + 1:]
                old = out.get(rel)
                out[rel] = (row[DataObject.checksum] or (old[0] if old else ""), int(row[DataObject.id]),
                            (old[2] if old else 0) + 1)
    return out


def rq_state(r: Any, queue: str, ledger: Any = None, zone: str = "", rels: list[str] | None = None) -> str:
    """Where the jobs are (for a failure message): the queue, its intermediate list, the registries, and
    the status of the jobs of files the ledger still calls queued."""
    from rq import Queue
    from rq.job import Job
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    q = Queue(queue, connection=r)
    now = time.time()
    started = [(m.decode(), round(sc - now, 1)) for m, sc in r.zrange(StartedJobRegistry(queue=q).key, 0, -1,
                                                                          withscores=True)]
    out = [f"queue {q.count}, intermediate {r.llen(q.intermediate_queue_key)}, started {started[:5]}, "
           f"scheduled {ScheduledJobRegistry(queue=q).count}, failed {FailedJobRegistry(queue=q).count}"]
    if ledger is not None and rels:
        jobs: dict[str, int] = {}
        for e in ledger.get_many(zone, rels):
            if e is not None and e.state == b"Q":
                jobs[e.job] = jobs.get(e.job, 0) + 1
        for jid, n in list(jobs.items())[:8]:
            try:
                st = Job.fetch(jid, connection=r).get_status()
            except Exception as ex:  # noqa: BLE001
                st = f"{type(ex).__name__}"
            out.append(f"job {jid} ({n} files): {st}")
    return "; ".join(out)


# -- the worker process -----------------------------------------------------------------------------------

def _install_kill_points() -> None:
    from irods_ingestd import checksums, locks
    from irods_ingestd.ingest import attempt as attempt_mod

    if os.environ.get("ADVF_LOCK_TTL"):  # a killed worker's file lock lapses sooner (the product's: 35 s)
        defaults = locks.FileLock.__init__.__defaults__
        assert defaults is not None
        locks.FileLock.__init__.__defaults__ = (float(os.environ["ADVF_LOCK_TTL"]), *defaults[1:])

    at = int(os.environ.get("ADVF_KILL_AT_BYTES", "0"))
    if at:
        seen = [0]
        real_update = checksums.Hasher.update

        def update(self: Any, chunk: bytes) -> None:
            seen[0] += len(chunk)
            if seen[0] >= at:
                logging.getLogger("advf").warning("ADVF: killing myself after %d bytes of a copy", seen[0])
                os.kill(os.getpid(), signal.SIGKILL)
            real_update(self, chunk)

        checksums.Hasher.update = update  # type: ignore[method-assign]
    if os.environ.get("ADVF_KILL_AFTER_SET_ASIDE"):
        from irods_ingestd.ingest import catalog

        real_aside = catalog.set_aside_version

        def set_aside_version(session: Any, target: Any) -> str:
            aside = real_aside(session, target)
            logging.getLogger("advf").warning("ADVF: killing myself after setting %s aside", aside)
            os.kill(os.getpid(), signal.SIGKILL)
            return aside

        catalog.set_aside_version = set_aside_version  # type: ignore[assignment]
    if os.environ.get("ADVF_KILL_ON_REL"):  # a poison file: every worker that touches it dies
        real_attempt0 = attempt_mod.attempt
        poison = os.environ["ADVF_KILL_ON_REL"]

        def attempt0(ctx: Any, session: Any, zone: Any, item: Any, *a: Any, **kw: Any) -> str:
            if item.rel == poison:
                logging.getLogger("advf").warning("ADVF: killing myself on %s", item.rel)
                os.kill(os.getpid(), signal.SIGKILL)
            return real_attempt0(ctx, session, zone, item, *a, **kw)

        attempt_mod.attempt = attempt0  # type: ignore[assignment]
    if os.environ.get("ADVF_KILL_AFTER_ATTEMPT"):
        real_attempt = attempt_mod.attempt

        def attempt(*a: Any, **kw: Any) -> str:
            out = real_attempt(*a, **kw)
            logging.getLogger("advf").warning("ADVF: killing myself after the attempt (%s), before the ledger", out)
            os.kill(os.getpid(), signal.SIGKILL)
            return out

        attempt_mod.attempt = attempt  # type: ignore[assignment]


def main(argv: list[str]) -> int:
    from irods_ingestd.config import load
    from irods_ingestd.worker import run_worker

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    _install_kill_points()
    cfg = load(Path(argv[0]), check_paths=False)
    run_worker(cfg, name=argv[1], job_monitoring_interval=HEARTBEAT, maintenance_interval=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


class CuttingProxy:
    """A TCP proxy in front of the real iRODS that cuts every open connection once, after `cut_after` bytes
    went from the clients to the server (a network drop in the middle of a put)."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        import socket
        import threading

        self.upstream, self.cut_after = upstream, cut_after
        self.sent, self.cuts = 0, 0
        self._lock = threading.Lock()
        self._socks: list[Any] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: Any, dst: Any, upward: bool) -> None:
        import socket

        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if upward:
                    with self._lock:
                        self.sent += len(data)
                        cut = self.cuts == 0 and self.sent >= self.cut_after
                        if cut:
                            self.cuts += 1
                    if cut:
                        self.cut_all()
                        return
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut_all(self) -> None:
        import socket

        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop listening (the port refuses from now on) and cut every open connection."""
        import socket

        self._stop = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # close() alone leaves a thread blocked in accept() accepting
        except OSError:
            pass
        self.listener.close()
        self.cut_all()
