"""Stable journald MESSAGE_IDs of irods-ingestd.

Each id was generated once with ``systemd-id128 new`` and must never change: administrators filter on
them, e.g. ``journalctl -u 'irods-ingestd*' MESSAGE_ID=8af0fdb3d8d0495fa48e81f19fdf1c28 --since today``
lists today's failed ingests. Pass one with ``logger.info(msg, extra={"message_id": MessageId.X})``.
"""

from __future__ import annotations


class MessageId:
    """MESSAGE_ID values (32 lowercase hex characters each)."""

    #: A file was ingested into iRODS (fields: INGEST_ZONE, INGEST_PATH, IRODS_PATH, INGEST_BYTES,
    #: INGEST_SECONDS, INGEST_RESULT).
    FILE_INGESTED = "78f797c2d88243d98bc497b0d8892609"
    #: An ingest failed (same fields; INGEST_RESULT says why).
    FILE_FAILED = "8af0fdb3d8d0495fa48e81f19fdf1c28"
    #: A file was deliberately not ingested (already there, excluded, conflict ...).
    FILE_SKIPPED = "0cc2dbaddec145eeaefd9e2aa436b2f3"
    #: A zone fell back to walking its tree (events not trusted: network file system, overflow, ...).
    ZONE_WALKING = "57574a36a3b94fa98f006ea1b2c183c9"
    #: A zone trusts file system events again.
    ZONE_WATCHING = "5f968fa5105b4692bc23100654a53f95"
    #: The kernel's event queue overflowed (IN_Q_OVERFLOW): events were lost, a walk follows.
    EVENT_OVERFLOW = "6b7bef4d4cb74b988ce0335a14745311"
    #: The configuration was reloaded (SIGHUP / systemctl reload).
    RELOAD = "867e0bb0c7034b83b582d568a3cb8b13"
    #: The daemon started and is ready.
    DAEMON_STARTED = "b7967ce54feb4af3b2f0642fc99d680a"
    #: The daemon is stopping.
    DAEMON_STOPPING = "04295573d68d4cf5b6944dfd13c1a0e4"


ALL: dict[str, str] = {k: v for k, v in vars(MessageId).items() if k.isupper()}
