"""Watchers: what tells the daemon that something changed in a landing zone.

`api` defines the interface and the event record; `inotify` is the Linux backend; `poll` serves file
systems where inotify sees nothing (NFS, Lustre, GPFS written from other hosts): it reports nothing and
the daemon walks the zone on a timer instead.
"""
