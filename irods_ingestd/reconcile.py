"""Reconcile: walk a zone and compare what is on disk with the ledger.

A `Walk` is a stack of directories still to list; it never holds the tree. `Reconciler.step` lists a
few directories with `walk_dir`, reads their ledger hashes in one pipeline and returns only the files the
ledger does not hold at the same size and mtime, so an unchanged tree costs one Redis round trip per
`dirs_per_step` directories and nothing per file.

A file the ledger holds as queued at the same version is returned too if its RQ job was lost (emptied,
evicted, ended without recording it): its entry names the job, the jobs of a step are checked in one
atomic read (each job once a walk), and a lost one's entries are dropped (compare-and-delete, `queued`
corrected) so the file is queued again like a new one. An entry from before job ids were kept is
treated so when it was queued longer ago than `stale_queued`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .filters import NameFilter
from .ledger import QUEUED, Ledger, name_field, queued_job, version_bytes
from .walker import Listing, join, walk_dir


@dataclass
class Walk:
    stack: list[str] = field(default_factory=lambda: [""])
    full: bool = True  # a walk of the whole zone (else of one new subtree)
    started: float = field(default_factory=time.monotonic)
    dirs: int = 0
    files: int = 0
    new: int = 0
    unwatched: int = 0  # directories that could not be watched during this walk
    lost: int = 0  # files whose job was lost, queued again
    alive: set[str] = field(default_factory=set)  # jobs found alive in this walk (checked once)
    jobs: str = ""  # the walk's id when its directories are listed by walk jobs (walk_sched.py)

    @property
    def done(self) -> bool:
        return not self.stack


@dataclass(slots=True)
class Found:
    rel: str
    size: int
    mtime_ns: int


@dataclass(slots=True)
class _Queued:
    """A file the ledger holds as queued at this version: its job must still exist."""

    rel: str
    size: int
    mtime_ns: int
    raw: bytes
    job: str


LostJobs = Callable[[set[str]], set[str]]


class Reconciler:
    def __init__(self, ledger: Ledger, dirs_per_step: int = 64, stale_queued: float = 5 * 3600,
                 lost_jobs: LostJobs | None = None) -> None:
        self.ledger = ledger
        self.dirs_per_step = dirs_per_step
        # an entry without a job id queued longer ago than this lost its job: queue it again (the worker
        # finds an object already ingested and moves no byte)
        self.stale_queued = stale_queued
        self.lost_jobs = lost_jobs  # which of these RQ jobs will never run (None: trust every job)

    def step(self, zone: str, root: str, walk: Walk, names: NameFilter, follow_symlinks: bool,
             before_list: Callable[[str], object] | None = None) -> tuple[list[Found], list[Listing]]:
        """List up to dirs_per_step directories of the walk; return the files unknown to the ledger (or
        whose job was lost) and the listings (for their skipped entries and errors)."""
        listings: list[Listing] = []
        while walk.stack and len(listings) < self.dirs_per_step:
            reldir = walk.stack.pop()
            if before_list is not None:
                before_list(reldir)  # e.g. add an inotify watch before listing, so nothing falls between
            lst = walk_dir(root, reldir, names, follow_symlinks)
            walk.stack.extend(lst.subdirs)
            listings.append(lst)
        return self.compare(zone, walk, listings), listings

    def compare(self, zone: str, walk: Walk, listings: list[Listing]) -> list[Found]:
        """The files of these listings the ledger does not hold at the same size and mtime (or whose job
        was lost), counted into the walk (a walk job compares the directories it listed with this)."""
        walk.dirs += len(listings)
        with_files = [lst for lst in listings if lst.files]
        found: list[Found] = []
        queued: list[_Queued] = []
        if with_files:
            hashes = self.ledger.dirs(zone, [lst.reldir for lst in with_files])
            for lst, entries in zip(with_files, hashes, strict=True):
                walk.files += len(lst.files)
                get = entries.get
                for name, size, mtime in lst.files:
                    raw = get(name_field(name))
                    if raw is None or raw[1:17] != version_bytes(size, mtime):
                        found.append(Found(join(lst.reldir, name), size, mtime))
                    elif raw[:1] == QUEUED:
                        queued.append(_Queued(join(lst.reldir, name), size, mtime, raw, queued_job(raw)))
        walk.new += len(found)
        if queued:
            lost = self._requeue_lost(zone, walk, queued)
            walk.lost += len(lost)
            found += lost
        return found

    def _requeue_lost(self, zone: str, walk: Walk, queued: list[_Queued]) -> list[Found]:
        """The queued files whose job will never run, their entries dropped so they are queued again."""
        stale = time.time() - self.stale_queued
        check = {q.job for q in queued if q.job and q.job not in walk.alive}
        lost = self.lost_jobs(check) if check and self.lost_jobs is not None else set()
        walk.alive |= check - lost
        out = []
        for q in queued:
            gone = q.job in lost if q.job else int.from_bytes(q.raw[17:25], "big") < stale
            if gone and self.ledger.drop_lost(zone, q.rel, q.raw):
                out.append(Found(q.rel, q.size, q.mtime_ns))
        return out
