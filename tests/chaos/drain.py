"""When the fault campaign has drained: everything it wrote is in iRODS and acted on, nothing in flight.

Complete only when, all at once:

- every file written (and every earlier version of a same-name file) is in iRODS with its checksum, or,
  when failures are accepted (before `irods-ingestd retry`), listed failed;
- in `delete` and `move` zones its landing file is gone too (the after-action runs `after_hold` after the
  copy was verified, handed to the workers by the daemon every few seconds), unless it is listed failed;
- the zones' deferred after-actions (`{prefix}:after:{zone}` sorted sets) are all taken and run, and the
  files handed back to the daemon (`{prefix}:r:{zone}`: changed, locked, iRODS unavailable) are taken;
- RQ's queue and started registry are empty (ingest and after-action jobs alike);
- the same-name writer has written its last version.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rq import Queue
from rq.registry import StartedJobRegistry

from irods_ingestd import keys
from tests.chaos.check import list_objects, quick_state

if TYPE_CHECKING:
    from tests.chaos.campaign import Campaign


@dataclass
class DrainState:
    done: int = 0
    total: int = 0
    waiting: int = 0
    started: int = 0
    after_pending: int = 0  # deferred after-actions not yet taken by the daemon
    resettle: int = 0  # files handed back, not yet taken by the daemon
    landing_left: int = 0  # landing files of delete/move zones whose object is right, not yet acted on
    writing: bool = False  # the same-name writer is still at it

    @property
    def complete(self) -> bool:
        return (self.done == self.total and not self.waiting and not self.started and not self.after_pending
                and not self.resettle and not self.landing_left and not self.writing)

    def line(self) -> str:
        return (f"drain: {self.done}/{self.total} files done, {self.waiting} jobs waiting, {self.started} running, "
                f"{self.after_pending} after-actions deferred, {self.resettle} handed back, "
                f"{self.landing_left} landing files awaiting delete/move"
                + (", same-name writer busy" if self.writing else ""))


def state(c: Campaign, failed_ok: bool) -> DrainState:
    r = c.r()
    q = Queue(c.queue_name, connection=r)
    st = DrainState(waiting=q.count, started=StartedJobRegistry(queue=q).get_job_count(cleanup=False))
    for zone in c.zones:
        st.after_pending += int(r.zcard(keys.after_key(c.prefix, zone)))
        st.resettle += int(r.llen(keys.resettle_key(c.prefix, zone)))
    failed = c.failed_lists() if failed_ok else {}
    with c.irods.session() as s:
        objs = list_objects(s, c.root_coll)
    with c.lock:
        expected = list(c.expected.values())
        versions = {k: list(v) for k, v in c.versions.items()}
    st.done, todo = quick_state(objs, expected, c.zones, failed, versions)
    st.total = st.done + todo
    by_path = {o.path: o for o in objs}
    for e in expected:  # verified but still in the landing zone: the after-action is what is awaited
        z = c.zones[e.zone]
        o = by_path.get(f"{z.collection}/{e.rel}")
        if z.removes and o is not None and o.checksum == e.checksum and os.path.lexists(z.landing / e.rel):
            st.landing_left += 1
    st.writing = c.same_name_busy()
    return st


def wait_drained(c: Campaign, timeout: float, failed_ok: bool) -> float | None:
    """Seconds until drained (see the module); None on timeout, with what was left in the notes."""
    t0 = time.monotonic()
    last = ""
    st: DrainState | None = None
    while time.monotonic() - t0 < timeout:
        try:
            st = state(c, failed_ok)
            if (line := st.line()) != last:
                c.log(line)
                last = line
            if st.complete:
                return time.monotonic() - t0
        except Exception as e:  # noqa: BLE001 - a slow moment; look again
            c.log(f"drain check: {type(e).__name__}: {e}")
        time.sleep(2.0)
    c.res.notes.append(f"not drained within {timeout:.0f}s: {st.line() if st else 'no state read'}")
    c.res.notes += stuck_jobs(c)
    return None


def stuck_jobs(c: Campaign) -> list[str]:
    """What each job still in RQ's started registry is, who runs it since when, and the last lines of that
    worker's log."""
    from rq.job import Job

    out = []
    try:
        r = c.r()
        for jid, worker in c.started_jobs():
            job = Job.fetch(jid, connection=r)
            rec = job.args[0] if job.args else {}
            files = [f[0] if isinstance(f, list | tuple) else f.get("rel") for f in rec.get("files", [])]
            out.append(f"still running: job {jid} ({job.func_name}, zone {rec.get('zone', {}).get('name')}, "
                       f"{len(files)} files, e.g. {files[:3]}) in worker {worker} since {job.started_at}")
            if worker and worker.startswith("chaos-w"):
                log_file = c.logs / f"worker-{worker.split('-')[1][1:]}.log"
                tail = log_file.read_text(errors="replace").splitlines()[-3:] if log_file.exists() else []
                out += [f"  {log_file.name}: {line[:300]}" for line in tail]
    except Exception as e:  # noqa: BLE001 - a diagnosis only
        out.append(f"could not list the started jobs: {type(e).__name__}: {e}")
    return out
