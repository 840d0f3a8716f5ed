"""The reasons `irods-ingestd plan` gives for a name passed over: the zone's own filter and walk say them."""

from __future__ import annotations

from pathlib import Path

from irods_ingestd.config import ZoneConfig
from irods_ingestd.filters import NameFilter
from irods_ingestd.walker import walk_dir


def zone(**kw) -> ZoneConfig:  # type: ignore[no-untyped-def]
    return ZoneConfig(name="z", path=Path("/x"), collection="/t/z", **kw)


def test_explain_names_the_pattern_that_decided() -> None:
    f = NameFilter.for_zone(zone(include=("*.dat", "raw/*"), exclude=("*.md5", "tmp/*.dat")))
    assert f.explain("a.dat", "a.dat") is None
    assert f.explain("b.bam", "raw/b.bam") is None
    assert f.explain("a.md5", "a.md5") == "excluded (exclude '*.md5')"
    assert f.explain("x.dat", "tmp/x.dat") == "excluded (exclude 'tmp/*.dat')"  # a path pattern
    assert f.explain("b.bam", "b.bam") == "not included (include '*.dat', 'raw/*')"
    assert f.explain("x.tmp", "x.tmp") == "temporary name (temp_patterns '*.tmp')"
    # irods-ingestd's own names are reserved whatever temp_patterns says, and said so
    bare = NameFilter.for_zone(zone(temp_patterns=()))
    assert bare.explain(".a.ingestd-0123abcd.part", ".a.ingestd-0123abcd.part") == \
        "reserved name (irods-ingestd's own temporary names, '.*.ingestd-????????.part')"
    assert bare.explain("x.tmp", "x.tmp") is None


def test_a_walk_reports_what_it_passes_over_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "in.dat").write_text("x")
    for n in ("a.dat", "a.md5", "b.tmp"):
        (tmp_path / n).write_text(n)
    f = NameFilter.for_zone(zone(exclude=("*.md5", "skip")))
    quiet = walk_dir(str(tmp_path), "", f)
    assert [n for n, _, _ in quiet.files] == ["a.dat"] and quiet.excluded == [] and quiet.subdirs == []
    told = dict(walk_dir(str(tmp_path), "", f, report_excluded=True).excluded)
    assert told == {"a.md5": "excluded (exclude '*.md5')", "b.tmp": "temporary name (temp_patterns '*.tmp')",
                    "skip": "directory excluded (exclude 'skip'): not walked"}
