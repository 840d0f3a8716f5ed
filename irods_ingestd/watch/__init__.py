"""Watchers: what tells the daemon that something changed in a landing zone.

`api` defines the interface, the event record and what a backend declares about itself (complete events,
a reader to drain, mtime slack, a watch limit hit); `select` picks a zone's backend; `inotify` is the Linux
backend with a watch per directory; `fanotify` (with `fanotify_sys`, its system calls) marks whole filesystems
(CAP_SYS_ADMIN); `poll` serves file systems where inotify sees nothing (NFS, Lustre, GPFS written from other
hosts): it reports nothing and the zone is walked on a timer instead. Every backend passes the same
contract test (tests/integration/test_watcher_contract.py).
"""
