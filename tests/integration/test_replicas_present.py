"""The look before a deferred delete/move (replicas._present) on the real server: the object must still be
there as verified; a verified record that lost its SHA-256 (rebuilt from the ledger after Redis lost the held
records) is compared by size, never held for ever for a sum it does not have."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from irods_ingestd.ingest import replicas
from irods_ingestd.ingest.after import Verified


def test_present_by_sum_by_size_and_gone(irods: Any, tmp_path: Any) -> None:
    data = b"present " * 100
    src = tmp_path / "p.dat"
    src.write_bytes(data)
    coll = f"{irods.home}/present-{os.getpid()}"
    obj = f"{coll}/p.dat"
    with irods.session() as s:
        s.collections.create(coll)
        try:
            s.data_objects.put(str(src), obj, regChksum="")
            good = Verified("p.dat", len(data), 1, 1, 1, hashlib.sha256(data).hexdigest())
            assert replicas._present(s, obj, good) == ""
            assert replicas._present(s, obj, Verified("p.dat", len(data), 1, 1, 1, "")) == ""  # no sum: by size
            other = Verified("p.dat", len(data), 1, 1, 1, hashlib.sha256(b"other").hexdigest())
            assert "no longer in iRODS as it was verified" in replicas._present(s, obj, other)
            assert "no longer in iRODS" in replicas._present(s, obj, Verified("p.dat", len(data) + 1, 1, 1, 1, ""))
            s.data_objects.unlink(obj, force=True)
            assert "no longer in iRODS" in replicas._present(s, obj, good)
        finally:
            s.collections.remove(coll, recurse=True, force=True)
