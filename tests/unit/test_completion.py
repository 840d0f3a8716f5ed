"""Completion rules (issue 14.1) without a pipeline: the config checks, manifests, the job rows, the settler's
close rule and the daemon-side gate."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from irods_ingestd.completion import manifest
from irods_ingestd.completion.gate import Gate
from irods_ingestd.config import ConfigError, load
from irods_ingestd.job import Batch, FileItem, ZoneSpec
from irods_ingestd.settler import Ready, Settler

HEAD = """
[redis]
url = "redis://127.0.0.1:6379/0"
[irods]
environment_file = "@TMP@/env.json"
[[zone]]
name = "seq"
path = "@TMP@/landing"
collection = "/tempZone/home/rods/seq"
"""


def _load(tmp: Path, extra: str) -> object:
    (tmp / "landing").mkdir(exist_ok=True)
    (tmp / "env.json").write_text("{}")
    p = tmp / "config.toml"
    p.write_text((HEAD + extra).replace("@TMP@", str(tmp)))
    return load(p)


@pytest.mark.parametrize("extra,expected", [
    ("complete_when = 'marker'\n", "zone 'seq'.marker: required with complete_when = \"marker\""),
    ("complete_when = 'manifest'\n", "zone 'seq'.manifest: required"),
    ("complete_when = 'close'\nwatcher = 'poll'\n", "zone 'seq'.complete_when: \"close\" needs an event watcher"),
    ("complete_when = 'marker'\nmarker = 'run/RTAComplete.txt'\n", "zone 'seq'.marker: 'run/RTAComplete.txt' must"),
    ("complete_when = 'when-i-say'\n", "zone 'seq'.complete_when: 'when-i-say' is not one of"),
    ("marker = 'RTAComplete.txt'\n", "zone 'seq'.marker: only used with complete_when = \"marker\""),
    ("complete_when = 'marker'\nmarker = 'x'\nmarker_ingest = 'first'\n", "zone 'seq'.marker_ingest"),
    ("complete_when = 'settle'\nclose_settle = '1s'\n", "zone 'seq'.close_settle: only used with"),
    ("complete_when = 'close'\nclose_settle = '0s'\n", "zone 'seq'.close_settle: must be at least"),
    ("complete_when = 'manifest'\nmanifest = '*.sha256'\nmode = 'register'\n",
     "zone 'seq'.complete_when: \"manifest\" needs mode = \"put\""),
])
def test_bad_completion_config_names_zone_and_field(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, extra)
    assert expected in str(e.value), str(e.value)


def test_good_completion_configs_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "complete_when = 'marker'\nmarker = 'RTAComplete.txt'\nmarker_ingest = 'skip'\n"
                "after = 'move'\nmove_to = '@TMP@/done'\n")
    c = cfg.zones[0].completion  # type: ignore[attr-defined]
    assert (c.complete_when, c.marker, c.marker_ingest, c.by_directory) == ("marker", "RTAComplete.txt", "skip", True)
    cfg = _load(tmp_path, "complete_when = 'manifest'\nmanifest = '*.sha256'\nafter = 'delete'\n")
    assert cfg.zones[0].completion.pattern == "*.sha256"  # type: ignore[attr-defined]
    cfg = _load(tmp_path, "complete_when = 'close'\nclose_settle = '250ms'\n")
    assert cfg.zones[0].completion.close_settle == 0.25  # type: ignore[attr-defined]


def test_manifest_formats() -> None:
    s = hashlib.sha256(b"a").hexdigest()
    m = hashlib.md5(b"b").hexdigest()
    text = f"# comment\n{s}  ./lane1/a.fastq\n{m} *b.bin\n\n\\{s}  back\\\\slash\n"
    assert manifest.parse(text) == {"lane1/a.fastq": f"sha256:{s}", "b.bin": f"md5:{m}",
                                    "back\\slash": f"sha256:{s}"}


@pytest.mark.parametrize("text,why", [
    ("abc  x\n", "neither SHA-256"),
    ("nonsense\n", "line 1"),
    (f"{'0' * 64}  /etc/passwd\n", "absolute"),
    (f"{'0' * 64}  ../up\n", "not a path below"),
    (f"{'0' * 64}  a\n{'1' * 64}  a\n", "listed twice"),
    ("\n# nothing\n", "lists no file"),
])
def test_bad_manifests_say_why(text: str, why: str) -> None:
    with pytest.raises(manifest.BadManifest, match=why):
        manifest.parse(text)


def test_file_rows_stay_readable_both_ways() -> None:
    z = ZoneSpec("z", "/l", "/tempZone/c")
    old = Batch(z, (FileItem("a", 1, 2),)).to_record()
    assert old["files"] == [["a", 1, 2]]  # a zone without completion writes the rows it always wrote
    rec = Batch(z, (FileItem("r/a", 1, 2, "sha256:ab", "r"), FileItem("r/b", 3, 4, unit="r"))).to_record()
    back = Batch.from_record(rec).files
    assert back == (FileItem("r/a", 1, 2, "sha256:ab", "r"), FileItem("r/b", 3, 4, "", "r"))


def test_a_closed_file_is_ready_after_close_settle_unless_open() -> None:
    now = [0.0]
    open_files: set[str] = set()
    s = Settler(lambda z, r: (1, 1), clock=lambda: now[0])
    s.open_for_writing = lambda z, r: r in open_files
    s.closed("z", "a", 1, 1, settle=30.0, close_settle=1.0)
    s.closed("z", "b", 1, 1, settle=30.0, close_settle=1.0)
    open_files.add("b")  # opened again for writing
    now[0] = 1.5
    assert [x.rel for x in s.pop_ready()] == ["a"]
    now[0] = 40.0
    assert s.pop_ready() == []  # still open: never ready
    open_files.clear()
    now[0] = 75.0
    assert [x.rel for x in s.pop_ready()] == ["b"]



def test_the_gate_holds_files_until_their_marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from irods_ingestd.completion import units

    cfg = _load(tmp_path, "complete_when = 'marker'\nmarker = 'RTAComplete.txt'\n").zones[0]  # type: ignore[attr-defined]
    registered: list[str] = []
    monkeypatch.setattr(units, "register", lambda r, p, zone, unit, info: registered.append(unit) or True)
    g = Gate(cfg)
    g.loaded = True
    files = [Ready("seq", "run1/a", 1, 1), Ready("seq", "run1/sub/b", 1, 1), Ready("seq", "other/c", 1, 1)]
    out, problems = g.take(files, None, "p", None)  # type: ignore[arg-type]
    assert out == [] and problems == [] and len(g) == 3
    out, problems = g.take([Ready("seq", "run1/RTAComplete.txt", 0, 1)], None, "p", None)  # type: ignore[arg-type]
    assert sorted((x.rel, x.unit) for x in out) == [("run1/a", "run1"), ("run1/sub/b", "run1")]
    assert registered == ["run1"] and list(g.held) == ["other/c"]
    out, _ = g.take([Ready("seq", "run1/late", 1, 1), Ready("seq", "run1/RTAComplete.txt", 0, 1)], None, "p",
                    None)  # type: ignore[arg-type]
    assert [x.rel for x in out] == ["run1/late"]  # the marker itself is never queued by the daemon
    _, problems = g.take([Ready("seq", "RTAComplete.txt", 0, 1)], None, "p", None)  # type: ignore[arg-type]
    assert problems and "root is not honoured" in problems[0][1]


def test_a_large_directory_is_looked_at_less_often_while_it_is_ingested() -> None:
    from irods_ingestd.completion.check import RECHECK, RECHECK_MAX, recheck_after

    assert recheck_after(0) == recheck_after(5_000) == RECHECK  # a run directory of thousands: every 3 s
    assert recheck_after(100_000) == pytest.approx(30.0)
    assert recheck_after(10_000_000) == RECHECK_MAX
    sizes = [1, 10_000, 50_000, 100_000, 300_000]
    assert [recheck_after(n) for n in sizes] == sorted(recheck_after(n) for n in sizes)
