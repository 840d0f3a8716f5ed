"""Session 5 probe, completion: a manifest's line for itself (`sha256sum * > MANIFEST.sha256` writes one)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from irods_ingestd.completion import manifest

EMPTY = hashlib.sha256(b"").hexdigest()


def test_a_line_for_the_manifest_itself_is_skipped(tmp_path: Path) -> None:
    s = hashlib.sha256(b"a").hexdigest()
    p = tmp_path / "MANIFEST.sha256"
    p.write_text(f"{s}  a.dat\n{EMPTY}  MANIFEST.sha256\n{EMPTY}  sub/MANIFEST.sha256\n")
    assert manifest.read(str(p)) == {"a.dat": f"sha256:{s}", "sub/MANIFEST.sha256": f"sha256:{EMPTY}"}
    p.write_text(f"{s}  a.dat\n{EMPTY} *./MANIFEST.sha256\n")
    assert manifest.read(str(p)) == {"a.dat": f"sha256:{s}"}


def test_a_manifest_listing_only_itself_is_bad(tmp_path: Path) -> None:
    p = tmp_path / "M.sha256"
    p.write_text(f"{EMPTY}  M.sha256\n")
    with pytest.raises(manifest.BadManifest, match="lists no file but itself"):
        manifest.read(str(p))


def test_itself_listed_twice_is_still_bad() -> None:
    with pytest.raises(manifest.BadManifest, match="listed twice"):
        manifest.parse(f"{EMPTY}  M.sha256\n{'1' * 64}  M.sha256\n", "M.sha256")


def test_a_byte_order_mark_and_crlf_lines_are_read() -> None:
    s = hashlib.sha256(b"a").hexdigest()
    assert manifest.parse(f"\ufeff{s}  a.dat\r\n{s} *b.dat\r\n") == {"a.dat": f"sha256:{s}", "b.dat": f"sha256:{s}"}
