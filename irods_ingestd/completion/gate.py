"""The daemon's side of directory completion: settled files wait until their directory is complete.

One `Gate` per zone with ``complete_when = "marker"`` or ``"manifest"`` sits between the settler and the
queue (:meth:`take`, called on the daemon's ready files before they are queued):

* A settled file below no complete directory is *held* (in memory only: a restart loses nothing, since it
  is in no ledger entry and the next walk finds it again).
* A settled marker completes its directory (its own, below the zone's root): the unit is registered in
  Redis (:mod:`.units`), the held files below it are released, and from then on every file below it passes.
  The marker itself is never queued by the daemon: the worker's unit check ingests it after all the
  others are verified (``marker_ingest = "last"``), or never (``"skip"``).
* A settled manifest is read; its directory is complete when every listed file is present and settled (held
  here, or already known to the ledger). Then the unit is registered and the files released, the listed
  ones carrying their sum to the worker (``FileItem.expect``); the manifest goes with them. A missing
  file holds the set (logged, and said in the unit's record); a bad manifest is listed as a failed file.
* At start the zone's units still pending in Redis and those completed are loaded, so a directory
  half-queued before a restart is released again as soon as its files are found.

Units do not nest: a marker or manifest below a complete directory is one of its files.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from ..config import ZoneConfig
from ..filters import NameFilter
from ..ledger import DONE, Ledger
from ..settler import Ready
from . import manifest, units

log = logging.getLogger("irods_ingestd.daemon")

RECHECK = 5.0  # seconds between looks at a manifest's missing files
PRUNE = 60.0  # seconds between looks for units whose directory went away


class Unit:
    __slots__ = ("kind", "file", "expect", "released", "missing", "looked", "dir_id")

    def __init__(self, kind: str, file: str, expect: dict[str, str] | None = None, released: bool = False) -> None:
        self.kind = kind
        self.file = file  # the marker or manifest, relative to the zone
        self.expect = expect or {}  # manifest: path relative to the zone → "sha256:<hex>"
        self.released = released
        self.missing: tuple[str, ...] = ()  # last reported missing files
        self.looked = 0.0  # when the ledger was last asked about listed files not held here
        self.dir_id: tuple[int, int] | None = None  # its directory's (device, inode) when first looked at


class Gate:
    def __init__(self, cfg: ZoneConfig) -> None:
        self.cfg = cfg
        self.zone = cfg.name
        self.kind = cfg.completion.complete_when
        self._pattern = re.compile(fnmatch.translate(cfg.completion.pattern))
        self.held: dict[str, Ready] = {}  # settled files waiting for their directory
        self.units: dict[str, Unit] = {}  # unit → what completes it
        self.loaded = False
        self._rescan_held = False
        self._next_look = 0.0
        self._next_prune = time.monotonic() + PRUNE
        self._filter: NameFilter | None = None

    def __len__(self) -> int:
        return len(self.held)

    def _path(self, rel: str) -> str:
        return os.path.join(str(self.cfg.path), rel)

    def is_completer(self, rel: str) -> bool:
        return bool(self._pattern.match(rel.rpartition("/")[2]))

    def unit_of(self, rel: str) -> str | None:
        """The outermost known unit the file is below (units do not nest), or None."""
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d in self.units:
                return d
        return None

    # -- start ------------------------------------------------------------------------------------------
    def load(self, r: redis.Redis, prefix: str) -> None:
        """The zone's units pending or completed before this daemon started."""
        for unit, info in units.pending(r, prefix, self.zone).items():
            u = Unit(info.kind, info.file, released=True)
            if info.kind == "manifest":
                u.expect = self._read_manifest(unit, info.file) or {}
            u.dir_id = (info.dev, info.ino) if info.ino else None
            self.units[unit] = u
        for unit, d in units.done(r, prefix, self.zone).items():
            if unit not in self.units:
                u = self.units[unit] = Unit(self.kind, str(d.get("file", "")), released=True)
                u.dir_id = (int(d["dev"]), int(d["ino"])) if d.get("ino") else None
        self.loaded = True

    def _read_manifest(self, unit: str, rel: str) -> dict[str, str] | None:
        try:
            listed = manifest.read(self._path(rel))
        except (OSError, manifest.BadManifest):
            return None
        return {(f"{unit}/{k}" if unit else k): v for k, v in listed.items()}

    # -- the daemon's ready files -------------------------------------------------------------------------
    def take(self, ready: Sequence[Ready], r: redis.Redis, prefix: str,
             ledger: Ledger) -> tuple[list[Ready], list[tuple[str, str]]]:
        """The ready files that may be queued now (with their unit and expected sum); the rest are held.
        Also (rel, reason) of files to report (a marker in the zone's root, a bad manifest)."""
        if not self.loaded:
            try:
                self.load(r, prefix)
            except redis.RedisError:
                self.held.update((x.rel, x) for x in ready)  # looked at again once the units are known
                raise
        out: list[Ready] = []
        problems: list[tuple[str, str]] = []
        touched: set[str] = set()
        looked: dict[str, bool] = {}
        for x in ready:
            known = self.unit_of(x.rel)
            while known is not None and not self._same_dir(known, looked):
                known = self.unit_of(x.rel)  # its directory was replaced: a new one, waiting for its own marker
            if known is not None:
                unit, u = known, self.units[known]
                if u.released:
                    if u.kind == "manifest" and x.rel == u.file and not self._reread(unit, u, x, ledger, problems):
                        continue
                    if not (u.kind == "marker" and x.rel == u.file):
                        out.append(self._tagged(x, unit, u))
                    continue
                self.held[x.rel] = x
                touched.add(unit)
                continue
            if self.is_completer(x.rel):
                unit = units.unit_of(x.rel)
                if not unit:
                    problems.append((x.rel, f"a {self.kind} in the zone's root is not honoured (it completes "
                                     f"the directory it is in, below the zone)"))
                    continue
                problem = self._new_unit(unit, x, ledger, problems)
                if problem is None:
                    touched.add(unit)
                continue
            self.held[x.rel] = x
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + RECHECK
            touched |= {name for name, waiting in self.units.items() if not waiting.released}
        if self._rescan_held:  # a Redis error cut the last turn short: release what was passed then
            self._rescan_held = False
            touched |= {d for rel in self.held if (d := self.unit_of(rel)) is not None}
        try:
            for unit in touched:
                out += self._try_release(unit, r, prefix, ledger)
        except redis.RedisError:
            for x in out:  # queued only once their unit is registered: held until Redis answers again
                self.held[x.rel] = Ready(x.zone, x.rel, x.size, x.mtime_ns)
            self._rescan_held = True
            raise
        if now >= self._next_prune:
            self._next_prune = now + PRUNE
            self._prune()
        return out, problems

    def _same_dir(self, unit: str, looked: dict[str, bool]) -> bool:
        """The unit's directory is still the one it completed; else (moved away whole and a new directory of
        that name made, removed and made again) the unit is forgotten here: it was moved or is gone."""
        same = looked.get(unit)
        if same is None:
            u = self.units[unit]
            try:
                st = os.stat(self._path(unit), follow_symlinks=False)
                now: tuple[int, int] | None = (st.st_dev, st.st_ino)
            except OSError:
                now = None
            if u.dir_id is None or now is None:  # not seen yet; gone (its files too: _prune forgets it)
                u.dir_id = u.dir_id or now
                now = u.dir_id
            same = looked[unit] = now == u.dir_id
            if not same:
                del self.units[unit]
                log.info("zone %s: %s/ is not the directory completed by %s any more: its files wait for their "
                         "own %s", self.zone, unit, u.file, self.kind,
                         extra={"fields": {"INGEST_ZONE": self.zone, "INGEST_PATH": self._path(unit)}})
        return same

    def _tagged(self, x: Ready, unit: str, u: Unit) -> Ready:
        return Ready(x.zone, x.rel, x.size, x.mtime_ns, u.expect.get(x.rel, ""), unit)

    def _new_unit(self, unit: str, x: Ready, ledger: Ledger, problems: list[tuple[str, str]]) -> str | None:
        if self.kind == "marker":
            self.units[unit] = Unit("marker", x.rel)
            self.held.pop(x.rel, None)
            self._same_dir(unit, {})  # its directory's identity, from now on
            return None
        listed = self._listing(unit, x, ledger, problems, f"nothing of {unit}/ is ingested until it is fixed")
        if listed is None:
            return "the manifest cannot be used"
        self.units[unit] = Unit("manifest", x.rel, listed)
        self.held[x.rel] = x  # the manifest goes with its set
        self._same_dir(unit, {})
        return None

    def _listing(self, unit: str, x: Ready, ledger: Ledger, problems: list[tuple[str, str]],
                 meanwhile: str) -> dict[str, str] | None:
        """The manifest's listing (path relative to the zone → sum), or None: a bad one is recorded as a failed
        file (its reason ends with `meanwhile`), an unreadable one reported."""
        try:
            listed = manifest.read(self._path(x.rel))
        except manifest.BadManifest as e:
            reason = f"bad manifest: {e}; {meanwhile}"
            ledger.mark_failed(self.zone, x.rel, x.size, x.mtime_ns, reason, kind="manifest")
            problems.append((x.rel, reason))
            return None
        except OSError as e:
            problems.append((x.rel, f"cannot read the manifest: {e.strerror}"))
            return None
        return {f"{unit}/{k}" if unit else k: v for k, v in listed.items()}

    def _reread(self, unit: str, u: Unit, x: Ready, ledger: Ledger, problems: list[tuple[str, str]]) -> bool:
        """A released set's manifest written again (the sender corrected it): its sums apply from now on, and
        a listed file that failed against a sum that changed is handed back to be settled and queued again
        (as `retry` does). False if the new manifest cannot be used (reported; the old sums stay)."""
        new = self._listing(unit, x, ledger, problems, "the sums of the earlier version still apply")
        if new is None:
            return False
        changed = [rel for rel, v in new.items() if u.expect.get(rel) != v]
        u.expect = new
        if changed:
            raw = ledger.r.hmget(ledger.failed_key(self.zone), [os.fsencode(rel) for rel in changed])
            infos = {rel: json.loads(r) for rel, r in zip(changed, raw, strict=True) if r is not None}
            again = [rel for rel, info in infos.items() if info.get("kind") == "manifest"]
            for rel in again:
                info = infos[rel]
                ledger.forget(self.zone, rel, int(info.get("size", 0)), int(info.get("mtime_ns", 0)), resettle=True)
                ledger.clear_failure(self.zone, rel)
            # ingested before this sum was listed (the manifest was read while its writer paused): checked again
            # against it (the object is there: only the landing file is hashed); until then the set is not done
            for rel, e in zip(changed, ledger.get_many(self.zone, changed), strict=True):
                if e is not None and e.state == DONE and rel not in infos:
                    ledger.forget(self.zone, rel, e.size, e.mtime_ns, resettle=True)
                    again.append(rel)
            log.info("zone %s: %s was written again: %d listed sum%s changed, %d file%s queued again to be checked",
                     self.zone, x.rel, len(changed), "" if len(changed) == 1 else "s", len(again),
                     "" if len(again) == 1 else "s",
                     extra={"fields": {"INGEST_ZONE": self.zone, "INGEST_PATH": self._path(x.rel)}})
        return True

    def _try_release(self, unit: str, r: redis.Redis, prefix: str, ledger: Ledger) -> list[Ready]:
        u = self.units.get(unit)
        if u is None:
            return []
        if not u.released:
            if u.kind == "manifest" and not self._all_present(unit, u, ledger, r, prefix):
                return []
            dev, ino = u.dir_id or (0, 0)
            info = units.UnitInfo(u.kind, u.file, dev=dev, ino=ino)
            units.register(r, prefix, self.zone, unit, info)
            if u.missing:
                units.note_waiting(r, prefix, self.zone, unit, "")
                u.missing = ()
            u.released = True
            log.info("zone %s: %s/ is complete (%s %s); its files are queued", self.zone, unit, u.kind, u.file,
                     extra={"fields": {"INGEST_ZONE": self.zone, "INGEST_PATH": self._path(unit)}})
        prefix_ = unit + "/"
        out = [self._tagged(x, unit, u) for rel, x in self.held.items()
               if rel.startswith(prefix_) and not (u.kind == "marker" and rel == u.file)]
        for x in out:
            del self.held[x.rel]
        return out


    def _all_present(self, unit: str, u: Unit, ledger: Ledger, r: redis.Redis, prefix: str) -> bool:
        """Every listed file present and settled: held here, or known to the ledger (queued before a restart)."""
        absent = [rel for rel in u.expect if rel not in self.held]
        if absent:
            now = time.monotonic()
            if now - u.looked < RECHECK:  # a delivery still trickling in: the ledger is asked every few seconds
                return False
            u.looked = now
            entries = ledger.get_many(self.zone, absent)
            absent = [rel for rel, e in zip(absent, entries, strict=True) if e is None and not self._not_ingested(rel)]
        if not absent:
            return True
        shown = tuple(sorted(absent)[:5])
        if shown != u.missing:
            u.missing = shown
            said = ", ".join(self._absent(rel) for rel in shown)
            units.note_waiting(r, prefix, self.zone, unit, f"{u.file}: {len(absent)} listed file"
                               f"{'' if len(absent) == 1 else 's'} missing or not settled: {said}"
                               f"{' …' if len(absent) > len(shown) else ''}")
            log.warning("zone %s: %s waits for %d listed file%s not present or not settled yet: %s%s", self.zone,
                        u.file, len(absent), "" if len(absent) == 1 else "s", said,
                        " …" if len(absent) > len(shown) else "",
                        extra={"fields": {"INGEST_ZONE": self.zone, "INGEST_PATH": self._path(u.file),
                                          "INGEST_RESULT": f"waiting for {len(absent)} listed files"}})
        return False

    def _names(self) -> NameFilter:
        if self._filter is None:
            self._filter = NameFilter.for_zone(self.cfg)
        return self._filter

    def _not_ingested(self, rel: str) -> bool:
        """A listed file the zone never ingests (a sidecar, excluded, not included: `sha256sum *` lists them),
        there and quiet for settle: present (its sum is not checked; it stays with the set). A temporary name
        is not: a copy may still be at work."""
        try:
            st = os.lstat(self._path(rel))
        except OSError:
            return False
        why = self._names().reason_to_skip(rel.rpartition("/")[2], rel)
        return stat.S_ISREG(st.st_mode) and why not in (None, "temporary") and \
            time.time() - st.st_mtime >= self.cfg.settle

    def _absent(self, rel: str) -> str:
        """A listed file not taken, said with what is there instead: a directory, or a file the zone skips."""
        try:
            mode = os.lstat(self._path(rel)).st_mode
        except OSError:
            return rel
        if stat.S_ISDIR(mode):
            return f"{rel} (a directory)"
        why = self._names().explain(rel.rpartition("/")[2], rel)
        return f"{rel} (there, but skipped by the zone: {why})" if why else rel

    def _prune(self) -> None:
        """Forget units whose directory is gone (moved away whole), and held files that vanished."""
        for unit in [u for u in self.units if not os.path.isdir(self._path(u))]:
            del self.units[unit]
        for rel in [rel for rel in self.held if not os.path.lexists(self._path(rel))]:
            del self.held[rel]

    def discard(self, rel: str | None = None) -> None:
        if rel is None:
            self.held.clear()
        else:
            self.held.pop(rel, None)

    def waiting(self) -> dict[str, str]:
        """Units not complete yet, and why (for the status)."""
        return {u: f"waiting for {len(x.missing)}+ listed files" for u, x in self.units.items() if not x.released}


def through(zones: dict[str, Any], ready: list[Ready], r: redis.Redis, prefix: str, ledger: Ledger,
            report: Callable[[str, str, str], None]) -> tuple[list[Ready], redis.RedisError | None]:
    """The daemon's ready files, the marker/manifest zones' ones through their gate (`Zone.gate`): what may
    be queued now, and a Redis error met on the way (what it cut short stays held in its gate)."""
    gates = {name: zs.gate for name, zs in zones.items() if getattr(zs, "gate", None) is not None}
    if not gates:
        return ready, None
    out: list[Ready] = []
    by_zone: dict[str, list[Ready]] = {name: [] for name in gates}
    for x in ready:
        (by_zone[x.zone] if x.zone in by_zone else out).append(x)
    error: redis.RedisError | None = None
    for name, items in by_zone.items():
        if not items and not gates[name].units:
            continue
        try:
            passed, problems = gates[name].take(items, r, prefix, ledger)
        except redis.RedisError as e:
            error = e
            continue
        out += passed
        for rel, reason in problems:
            report(name, rel, reason)
    return out, error
