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


def test_the_gate_takes_a_directory_made_again_under_a_released_units_name_as_a_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run1 complete and released; it is renamed away (moved whole) and a new run1 made: its files wait for
    their own marker, and that marker completes it anew."""
    from irods_ingestd.completion import units
    from irods_ingestd.completion.gate import Gate
    from irods_ingestd.settler import Ready
    from tests.unit.test_completion import _load

    cfg = _load(tmp_path, "complete_when = 'marker'\nmarker = 'RTAComplete.txt'\n").zones[0]  # type: ignore[attr-defined]
    monkeypatch.setattr(units, "register", lambda r, p, zone, unit, info: True)
    land = tmp_path / "landing"
    (land / "run1").mkdir()
    g = Gate(cfg)
    g.loaded = True
    out, _ = g.take([Ready("seq", "run1/a", 1, 1), Ready("seq", "run1/RTAComplete.txt", 0, 1)], None, "p",
                    None)  # type: ignore[arg-type]
    assert [x.rel for x in out] == ["run1/a"]
    (land / "run1").rename(land / "moved")
    (land / "run1").mkdir()
    out, _ = g.take([Ready("seq", "run1/b", 1, 1)], None, "p", None)  # type: ignore[arg-type]
    assert out == [] and list(g.held) == ["run1/b"]
    out, _ = g.take([Ready("seq", "run1/RTAComplete.txt", 0, 2)], None, "p", None)  # type: ignore[arg-type]
    assert [(x.rel, x.unit) for x in out] == [("run1/b", "run1")]
