"""Fault kinds of the campaign beyond tests/chaos/campaign.py's short ones: a long iRODS outage and a second daemon.

- irods-outage: the iRODS test server refuses every new connection and drops the open ones for `hold`
  seconds (120 in the full campaign; in the short one a little longer than the workers' retry budget).
  A file whose transient errors outlast the retries is handed back to the daemon ("iRODS unavailable,
  queued again") and queued again; none may be listed failed for it. The workers' hand-backs are counted
  from their logs.
- daemon-second: a second `irods-ingestd run` on the same config for `hold` seconds, supervised as systemd
  would (Restart=on-failure): a daemon that refuses to start because another one runs its zones
  (irods_ingestd.daemonlock, `{prefix}:owner:{zone}`) is an expected outcome, not a crash, and is started
  again after RESTART_SEC. Variant `takeover`: the first daemon is killed meanwhile, so the second one
  takes the zones over and the first one, restarted, is the one refused until the second stops.
  The second one is stopped with SIGTERM or SIGKILL. Without a lock in the product both just run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from irods_ingestd import keys

if TYPE_CHECKING:
    from tests.chaos.campaign import Campaign, Proc

RESTART_SEC = 2.0  # the campaign's supervisor, for a daemon that refused to start (the unit says 5 s)
REFUSED = "refusing to start"
HANDED_BACK = "iRODS unavailable, queued again"
SECOND = "daemon-2"


@dataclass
class FaultsExtra:
    """What the campaign saw of the faults of this module."""

    outage_seconds: list[float] = field(default_factory=list)
    handed_back: int = 0  # hand-back records in the workers' logs
    handed_back_files: int = 0  # distinct files among them
    refusals: Counter = field(default_factory=Counter)  # process key → starts refused (another daemon runs)
    second: Counter = field(default_factory=Counter)  # refused | took-over | alongside
    after_kills_in_flight: int = 0  # workers killed while running deferred after-actions
    traps_swapped: int = 0  # worker-kill-after: files renamed onto a verified one, same size and mtime


def plan_params(kind: str, rng: random.Random, short: bool, outage: float) -> dict[str, Any] | None:
    """The parameters of a fault of this module (None: not one of them)."""
    if kind == "irods-outage":
        return {"hold": outage}
    if kind == "worker-kill-after":
        return {"zone": rng.choice(["delete", "delete", "move"]), "files": 150, "traps": TRAPS}
    if kind == "daemon-second":
        return {"variant": rng.choice(["alongside", "alongside", "takeover"]),
                "hold": round(rng.uniform(4.0, 8.0) if short else rng.uniform(8.0, 20.0), 2),
                "stop": rng.choice(["term", "kill"])}
    return None


def retry_budget(retries: int, backoff: float, backoff_max: float) -> float:
    """Seconds a worker sleeps between its attempts at one file before it hands the file back."""
    return sum(min(backoff * 2 ** a, backoff_max) for a in range(retries))


# -- the supervisor's view of an exit ---------------------------------------------------------------------

def refused(p: Proc) -> bool:
    """Did this run of the process end by refusing to start (another daemon runs its zones)?"""
    if p.p is None or p.p.returncode in (0, None) or not p.name.startswith("daemon"):
        return False
    try:
        with open(p.logfile, "rb") as f:
            f.seek(p.log_offset)
            return REFUSED in f.read().decode(errors="replace")
    except OSError:
        return False


# -- irods-outage -----------------------------------------------------------------------------------------

def f_irods_outage(c: Campaign, p: dict[str, Any]) -> None:
    c.irods.refuse_connections(True)
    c.irods.drop_connections()
    t0 = time.monotonic()
    try:
        time.sleep(p["hold"])
    finally:
        c.irods.refuse_connections(False)
        c.extra.outage_seconds.append(round(time.monotonic() - t0, 1))


def count_handed_back(logs: Path) -> tuple[int, int]:
    """(hand-back records, distinct files) in the workers' logs."""
    n, files = 0, set()
    field_re = re.compile(r'INGEST_PATH=("(?:[^"\\]|\\.)*"|\S+)')
    for log_file in sorted(logs.glob("worker-*.log")):
        for line in log_file.read_text(errors="replace").splitlines():
            if HANDED_BACK in line:
                n += 1
                m = field_re.search(line)
                files.add(m.group(1) if m else line)
    return n, len(files)


# -- daemon-second ----------------------------------------------------------------------------------------

def owners(c: Campaign) -> set[int]:
    """The pids in the zones' ownership keys (empty: no lock in this product, or no owner now)."""
    out = set()
    try:
        r = c.r()
        for z in c.zones:
            raw = r.get(keys.owner_key(c.prefix, z))
            if raw:
                try:
                    out.add(int(json.loads(raw)["pid"]))
                except (ValueError, KeyError, TypeError):
                    continue
    except redis.RedisError:
        pass
    return out


def _pid(p: Proc | None) -> int | None:
    return p.p.pid if p is not None and p.p is not None and p.p.poll() is None else None


def _wait(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def f_daemon_second(c: Campaign, p: dict[str, Any]) -> None:
    from tests.chaos.campaign import Proc

    seen: set[int] = set()  # owner pids seen while the second daemon ran
    second_pids: set[int] = set()
    log_file = c.logs / "daemon-2.log"
    offset = log_file.stat().st_size if log_file.exists() else 0  # this fault's part of the log
    with c.lock:
        d2 = c.procs[SECOND] = Proc(SECOND, c.exe + ["run"], log_file)
        d2.start()

    def look() -> set[int]:
        """Note who owns the zones now (and the second daemon's pid); the owners' pids."""
        now = owners(c)
        seen.update(now)
        if (pid := _pid(d2)) is not None:
            second_pids.add(pid)
        return now

    try:
        if p["variant"] == "takeover":
            _wait(lambda: bool(look()) and _pid(d2) is None, 3.0)  # let it find the zones taken (or not)
            with c.lock:
                c.procs["daemon"].kill9()
            # the supervisor starts the refused second daemon again: it takes the dead one's zones
            took = _wait(lambda: bool(look() & second_pids), 15.0)
            if not took:
                c.res.notes.append("daemon-second (takeover): the second daemon did not take the zones over "
                                   f"within 15s (owners seen: {sorted(seen)})")
            with c.lock:
                c.procs["daemon"].start()  # now the first one is refused until the second stops
        deadline = time.monotonic() + p["hold"]
        while time.monotonic() < deadline:
            look()
            time.sleep(0.3)
    finally:
        with c.lock:
            c.procs.pop(SECOND, None)
            if p["stop"] == "kill":
                d2.kill9()
            else:
                d2.stop()
    with open(log_file, "rb") as f:
        f.seek(offset)
        n_refused = f.read().decode(errors="replace").count(REFUSED)
    if seen & second_pids:
        c.extra.second["took-over"] += 1
    elif n_refused:
        c.extra.second["refused"] += 1
    else:
        c.extra.second["alongside"] += 1
    # the first daemon runs its zones again before the next fault (the supervisor restarts it if refused)
    primary = c.procs["daemon"]
    if not _wait(lambda: _pid(primary) is not None and (not seen or _pid(primary) in owners(c)), 30.0):
        c.res.notes.append("daemon-second: the first daemon did not run its zones again within 30s "
                           f"after the second one stopped (owners: {sorted(owners(c))})")


# -- worker-kill-after (not in the default mix: see OPTIONAL) ---------------------------------------------

AFTER_TASK = "irods_ingestd.tasks.after_batch"
TRAPS = 10


def f_worker_kill_after(c: Campaign, p: dict[str, Any]) -> None:
    """A burst of small files into a delete or move zone, so that many after-actions fall due together
    (jobs of up to 200), then every worker seen running an after-action job within a few seconds is
    killed with SIGKILL in the middle of it.

    In the delete zone, `traps` names are written last (their after-actions fall due last); once each is
    verified in iRODS a different file of the same size and mtime is renamed onto it (`rsync -t` of a
    corrected file): only the first file's after-action, finding another file, has the second one settled
    and copied (the ledger holds the same size and mtime as done). Both must end in iRODS."""
    from rq.job import Job

    from tests.chaos.campaign import FilePlan

    c.burst_no += 1
    zone = c.zones[p["zone"]]
    for i in range(p["files"]):
        c.write_file(FilePlan(zone.name, f"afterburst{c.burst_no:02d}-{i:04d}.txt", c.frng.randint(1, 512)))
    traps = [f"trap{c.burst_no:02d}-{i:02d}.dat" for i in range(p.get("traps", 0) if zone.after == "delete" else 0)]
    if traps:
        _swap_traps(c, zone, traps)
    killed: set[str] = set()
    deadline = time.monotonic() + 60
    stop_at = None
    while time.monotonic() < (stop_at or deadline):
        try:
            for jid, worker in c.started_jobs():
                job = Job.fetch(jid, connection=c.r())
                if job.func_name == AFTER_TASK and worker and worker.startswith("chaos-w") and worker not in killed:
                    killed.add(worker)
                    c.extra.after_kills_in_flight += 1
                    c._kill_workers([int(worker.split("-")[1][1:])], 0.0)
                    stop_at = stop_at or time.monotonic() + 6.0
        except Exception:  # noqa: BLE001 - gone meanwhile
            pass
        time.sleep(0.01)
    if not killed:
        c.res.notes.append("worker-kill-after: no after-action job caught in flight within 60s")


def _swap_traps(c: Campaign, zone: Any, traps: list[str]) -> None:
    """Write the traps, wait until each is verified in iRODS, rename a different file of the same size and
    mtime onto it."""
    from tests.chaos.check import Expected

    first: dict[str, tuple[bytes, int]] = {}
    for rel in traps:
        data = random.Random(f"{c.o.seed}:{rel}:v0").randbytes(1000)
        path = zone.landing / rel
        path.write_bytes(data)
        c.register_version(zone.name, rel, Expected(zone.name, rel, len(data), hashlib.sha256(data).digest()))
        first[rel] = (data, os.stat(path).st_mtime_ns)
    pending = set(traps)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for rel in sorted(pending):
            data, mtime = first[rel]
            if not _object_is(c, f"{zone.collection}/{rel}", data):
                continue
            pending.discard(rel)
            if not (zone.landing / rel).exists():
                continue  # deleted already: too late for a swap
            new = random.Random(f"{c.o.seed}:{rel}:v1").randbytes(len(data))
            tmp = zone.landing / f".{rel}.swap01"
            tmp.write_bytes(new)
            os.utime(tmp, ns=(mtime, mtime))
            c.register_version(zone.name, rel, Expected(zone.name, rel, len(new), hashlib.sha256(new).digest()))
            os.rename(tmp, zone.landing / rel)
            c.extra.traps_swapped += 1
        time.sleep(0.05)


def _object_is(c: Campaign, path: str, data: bytes) -> bool:
    from irods.models import Collection, DataObject

    from tests.chaos.check import Expected

    want = Expected("", "", len(data), hashlib.sha256(data).digest()).checksum
    coll, _, name = path.rpartition("/")
    try:
        with c.irods.session() as s:
            q = s.query(DataObject.checksum).filter(Collection.name == coll).filter(DataObject.name == name)
            return any(row[DataObject.checksum] == want for row in q)
    except Exception:  # noqa: BLE001 - not there yet
        return False


FAULTS = {"irods-outage": f_irods_outage, "daemon-second": f_daemon_second,
          "worker-kill-after": f_worker_kill_after}


def rows(x: FaultsExtra, kinds: Counter) -> dict[str, str]:
    """Table values of this module's fault kinds."""
    held = ", ".join(f"{s:.0f} s" for s in x.outage_seconds) or "-"
    sec = ", ".join(f"{k}: {v}" for k, v in sorted(x.second.items())) or "-"
    return {
        "irods-outage": f"{kinds.get('irods-outage', 0)} ({held}; files handed back: {x.handed_back_files}, "
                        f"hand-backs: {x.handed_back})",
        "daemon-second": f"{kinds.get('daemon-second', 0)} ({sec}; starts refused: {sum(x.refusals.values())})",
        "worker-kill-after": f"{kinds.get('worker-kill-after', 0)} (caught in flight: {x.after_kills_in_flight}; "
                             f"same size and mtime renamed onto a verified file: {x.traps_swapped})",
    }

