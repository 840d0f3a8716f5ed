"""The poll backend: for file systems that inotify cannot see (NFS, Lustre, GPFS written elsewhere).

It reports no changes: the daemon walks such a zone every `poll_interval`, and the walk compares what
it finds with the ledger and with the files settling, so memory stays independent of the tree's size
(watchdog's PollingObserver would keep a snapshot of the whole tree in memory).
"""

from __future__ import annotations

from ..config import ZoneConfig
from .api import Change, Watcher


class PollWatcher(Watcher):
    name = "poll"
    complete = False  # nothing is reported: the zone is walked every poll_interval
    needs_drain = False
    mtime_slack = 60.0  # shared file systems: clocks of other hosts

    def add_zone(self, zone: ZoneConfig) -> None:
        pass

    def remove_zone(self, name: str) -> None:
        pass

    def watch_dir(self, zone: str, reldir: str) -> bool:
        return True

    def changes(self, limit: int = 10_000) -> list[Change]:
        return []

    def close(self) -> None:
        pass
