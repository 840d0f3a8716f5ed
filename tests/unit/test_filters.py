from __future__ import annotations

import os
import socket
from pathlib import Path

from irods_ingestd.config import ZoneConfig
from irods_ingestd.filters import NameFilter
from irods_ingestd.walker import walk_dir


def zone(**kw) -> ZoneConfig:  # type: ignore[no-untyped-def]
    return ZoneConfig(name="z", path=Path("/x"), collection="/t/z", **kw)


def test_temporary_names_of_copy_tools_are_skipped():
    f = NameFilter.for_zone(zone())
    for name in (".data.bin.Xy12Zq", "file.part", "x.tmp", "notes~", ".~lock.doc#", "a.swp", ".nfs0001"):
        assert f.reason_to_skip(name, name) == "temporary", name
    for name in ("data.bin", "run.fastq.gz", ".hidden", "part"):
        assert f.reason_to_skip(name, name) is None, name


def test_include_exclude_and_path_patterns():
    f = NameFilter.for_zone(zone(include=("*.fastq.gz", "raw/*"), exclude=("*.md5", "scratch")))
    assert f.reason_to_skip("a.fastq.gz", "run/a.fastq.gz") is None
    assert f.reason_to_skip("b.bam", "raw/b.bam") is None
    assert f.reason_to_skip("b.bam", "run/b.bam") == "not included"
    assert f.reason_to_skip("a.md5", "a.md5") == "excluded"
    assert f.dir_excluded("scratch", "x/scratch")
    assert not f.dir_excluded("data", "data")


def test_walk_dir_lists_one_directory_and_never_opens_special_files(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / ".a.txt.AbCdEf").write_text("temp")
    os.mkfifo(tmp_path / "pipe")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(tmp_path / "sock"))
    os.symlink(tmp_path / "a.txt", tmp_path / "link")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    try:
        lst = walk_dir(str(tmp_path), "", NameFilter.for_zone(zone()))
    finally:
        s.close()
    assert [(n, size) for n, size, _ in lst.files] == [("a.txt", 5)]
    assert lst.subdirs == ["sub"]
    skipped = dict(lst.skipped)
    assert skipped["pipe"].startswith("fifo") and skipped["sock"].startswith("socket")
    assert "symlink" in skipped["link"] and "symlink" in skipped["dangling"]
    followed = walk_dir(str(tmp_path), "", NameFilter.for_zone(zone()), follow_symlinks=True)
    assert sorted(n for n, _, _ in followed.files) == ["a.txt", "link"]
    assert "dangling" in dict(followed.skipped)
    deep = walk_dir(str(tmp_path), "sub", NameFilter.for_zone(zone()))
    assert [n for n, _, _ in deep.files] == ["deep.txt"] and deep.reldir == "sub"


def test_fast_path_agrees_with_the_full_filter():
    names = ["a.txt", ".a.txt.Ab12Cd", "x.part", "notes~", "data.md5", "raw", "r.fastq.gz", ".hidden", "x.tmpx",
             "scratch", "~lock", ".~lock.x#", "é.txt", "a b.txt"]
    zones = [zone(), zone(exclude=("*.md5", "scratch")), zone(include=("*.fastq.gz",)),
             zone(exclude=("sub/*",)), zone(temp_patterns=())]
    for z in zones:
        f = NameFilter.for_zone(z)
        for n in names:
            for rel in (n, f"sub/{n}"):
                assert f.wanted(n, lambda r=rel: r) == (f.reason_to_skip(n, rel) is None), (z, n, rel)
    assert NameFilter.for_zone(zones[1]).fast is not None  # the usual case takes the fast path
    assert NameFilter.for_zone(zones[2]).fast is None and NameFilter.for_zone(zones[3]).fast is None
