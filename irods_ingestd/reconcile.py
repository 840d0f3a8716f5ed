"""Reconcile: walk a zone and compare what is on disk with the ledger.

A `Walk` is a stack of directories still to list; it never holds the tree. `Reconciler.step` lists a
few directories with `walk_dir`, reads their ledger hashes in one pipeline and returns only the files the
ledger does not hold at the same size and mtime, so an unchanged tree costs one Redis round trip per
`dirs_per_step` directories and nothing per file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .filters import NameFilter
from .ledger import Ledger, is_current, name_field
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

    @property
    def done(self) -> bool:
        return not self.stack


@dataclass(slots=True)
class Found:
    rel: str
    size: int
    mtime_ns: int


class Reconciler:
    def __init__(self, ledger: Ledger, dirs_per_step: int = 64, stale_queued: float = 5 * 3600) -> None:
        self.ledger = ledger
        self.dirs_per_step = dirs_per_step
        # a file queued longer than this lost its job (e.g. an RQ record gone): queue it again; the
        # worker finds an object already ingested and moves no byte
        self.stale_queued = stale_queued

    def step(self, zone: str, root: str, walk: Walk, names: NameFilter, follow_symlinks: bool,
             before_list: Callable[[str], object] | None = None) -> tuple[list[Found], list[Listing]]:
        """List up to dirs_per_step directories of the walk; return the files unknown to the ledger and
        the listings (for their skipped entries and errors)."""
        listings: list[Listing] = []
        while walk.stack and len(listings) < self.dirs_per_step:
            reldir = walk.stack.pop()
            if before_list is not None:
                before_list(reldir)  # e.g. add an inotify watch before listing, so nothing falls between
            lst = walk_dir(root, reldir, names, follow_symlinks)
            walk.stack.extend(lst.subdirs)
            listings.append(lst)
        walk.dirs += len(listings)
        with_files = [lst for lst in listings if lst.files]
        found: list[Found] = []
        stale = int(time.time() - self.stale_queued)
        if with_files:
            hashes = self.ledger.dirs(zone, [lst.reldir for lst in with_files])
            for lst, entries in zip(with_files, hashes, strict=True):
                walk.files += len(lst.files)
                get = entries.get
                for name, size, mtime in lst.files:
                    if not is_current(get(name_field(name)), size, mtime, stale):
                        found.append(Found(join(lst.reldir, name), size, mtime))
        walk.new += len(found)
        return found, listings
