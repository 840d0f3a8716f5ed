"""A protocol-level iRODS stand-in for tests and demos (NOT a server for data anyone keeps).

It speaks enough of the iRODS XML protocol (API numbers, ``*_PI`` structs, native authentication in
both the legacy 703/704 and the 4.3 framework 110000 forms) that the unmodified python-irodsclient
3.3 cannot tell it from a real iRODS server for what an ingest daemon does: collections, put/get
(including parallel transfers over several connections with replica tokens), register in place,
checksums, AVU metadata, ACLs and GenQuery. Catalog: one SQLite file. Data: plain files under a
vault directory. It adds per-API call counters and fault injection driven over a small JSON-lines
control channel (see ``harness.py`` and ``README.md``).

Known simplifications (documented, deliberate):
- one resource, one replica per data object; no trash (unlink without force deletes outright);
- ACLs are stored and queryable but not enforced; no tickets, no specific queries, no SSL;
- unlink / collection removal delete physical files only when they are inside the vault (a
  registered-in-place file is only unregistered);
- a writer that disconnects without closing leaves its replica stale (status 0).

Run: ``python -m tests.irods_server --host 127.0.0.1 --port 1247 --vault DIR --catalog FILE``.
"""

from .server import IrodsTestServer

__all__ = ["IrodsTestServer"]
