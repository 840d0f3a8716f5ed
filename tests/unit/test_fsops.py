"""Landing-file operations: no-replace renames, free names, open-for-writing detection."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from irods_ingestd import fsops


def test_rename_noreplace_never_replaces(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("a")
    b.write_text("b")
    with pytest.raises(FileExistsError):
        fsops.rename_noreplace(str(a), str(b))
    assert a.read_text() == "a" and b.read_text() == "b"
    fsops.rename_noreplace(str(a), str(tmp_path / "c"))
    assert not a.exists() and (tmp_path / "c").read_text() == "a"


def test_free_name_numbers_like_gnu_backups(tmp_path: Path) -> None:
    p = tmp_path / "RunInfo.xml"
    assert fsops.free_name(str(p)) == str(p)
    p.write_text("1")
    assert fsops.free_name(str(p)) == f"{p}.~1~"
    Path(f"{p}.~1~").write_text("2")
    assert fsops.free_name(str(p)) == f"{p}.~2~"


def test_rename_to_free_name_never_overwrites_and_takes_the_next_name_when_raced(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "d"
    dest.write_text("old")
    (tmp_path / "a").write_text("a")
    assert fsops.rename_to_free_name(str(tmp_path / "a"), str(dest)) == f"{dest}.~1~"
    real = fsops.free_name
    raced: list[str] = []

    def racing(path: str, max_tries: int = 10_000) -> str:  # another process takes the free name first
        name = real(path, max_tries)
        if not raced:
            Path(name).write_text("theirs")
            raced.append(name)
        return name

    monkeypatch.setattr(fsops, "free_name", racing)
    (tmp_path / "b").write_text("b")
    assert fsops.rename_to_free_name(str(tmp_path / "b"), str(dest)) == f"{dest}.~3~"
    assert [Path(f"{dest}{s}").read_text() for s in ("", ".~1~", ".~2~", ".~3~")] == ["old", "a", "theirs", "b"]


def test_open_for_writing_sees_a_writer_in_another_process(tmp_path: Path) -> None:
    p = tmp_path / "growing.dat"
    p.write_bytes(b"x")
    assert fsops.open_for_writing(str(p)) is False
    code = f"import sys, time; f = open({str(p)!r}, 'ab'); print('open', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        assert fsops.open_for_writing(str(p)) is True
        assert fsops._proc_says(os.lstat(p)) is True  # the fallback agrees
    finally:
        proc.communicate("")
    assert fsops.open_for_writing(str(p)) is False
    # a reader is no writer
    with open(p, "rb"):
        assert fsops.open_for_writing(str(p)) is False
