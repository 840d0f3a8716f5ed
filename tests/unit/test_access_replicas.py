"""The replica gate's comparison: a replica's checksum against the verified landing file, in whatever scheme
the server writes it (SHA-256 from the verified digest; MD5 and others from the file read again)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from irods_ingestd.ingest.after import Verified
from irods_ingestd.ingest.replicas import _Expected


def verified(p: Path) -> Verified:
    st = os.stat(p)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    return Verified(p.name, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, digest)


def test_sha2_from_the_verified_digest_without_reading_the_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"payload")
    want = _Expected(verified(p), str(p), follow=False)
    p.unlink()  # the SHA-256 checksum needs no file
    assert want.matches("sha2:" + base64.b64encode(hashlib.sha256(b"payload").digest()).decode())
    assert not want.matches("sha2:" + base64.b64encode(hashlib.sha256(b"other").digest()).decode())
    assert not want.matches("")


def test_md5_from_the_file_read_again(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"payload")
    want = _Expected(verified(p), str(p), follow=False)
    assert want.matches(hashlib.md5(b"payload").hexdigest())
    assert not want.matches(hashlib.md5(b"other").hexdigest())
