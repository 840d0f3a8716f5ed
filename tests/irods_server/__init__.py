"""A protocol-level iRODS stand-in for tests and demos (NOT a server for data anyone keeps).

It speaks enough of the iRODS XML protocol (API numbers, ``*_PI`` structs, native authentication in
both the legacy 703/704 and the 4.3 framework 110000 forms) that the unmodified python-irodsclient
3.3 sees what it would see from a real iRODS 5.0.2 for what an ingest daemon does: collections,
put/get (including parallel transfers over several connections with replica tokens), register in place,
checksums, AVU metadata, ACLs, the trash and GenQuery. Catalog: one SQLite file. Data: plain files under a
vault directory. It adds per-API call counters and fault injection driven over a small JSON-lines
control channel (see ``harness.py`` and ``README.md``).

The real server is the judge: ``tests/integration/test_fidelity.py`` runs the same client calls against
both and compares. What it still does differently is listed in README.md.

Run: ``python -m tests.irods_server --host 127.0.0.1 --port 1247 --vault DIR --catalog FILE``.
"""

from .server import IrodsTestServer

__all__ = ["IrodsTestServer"]
