"""Declarative metadata (issue 14.2) without iRODS: the sidecar mapping, iRODS's limits, the config checks,
which names are sidecars."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from irods_ingestd import sidecars
from irods_ingestd.config import ConfigError, load
from irods_ingestd.filters import NameFilter
from irods_ingestd.sidecars import SidecarError, parse
from tests.unit.test_config import GOOD_HEAD, GOOD_ZONE, write


def test_the_documented_mapping() -> None:
    doc = b'''{"instrument": "NovaSeq", "reads": 1200000, "ratio": 1.50, "paired": true, "done": false,
               "organism": ["human", "mouse"], "coverage": {"value": 30, "units": "x"},
               "lanes": [{"value": 1, "units": "lane"}, 2], "none": [], "temp": {"value": -4.5e1}}'''
    assert parse(doc) == [
        ("instrument", "NovaSeq", ""), ("reads", "1200000", ""), ("ratio", "1.50", ""), ("paired", "true", ""),
        ("done", "false", ""), ("organism", "human", ""), ("organism", "mouse", ""), ("coverage", "30", "x"),
        ("lanes", "1", "lane"), ("lanes", "2", ""), ("temp", "-4.5e1", ""),
    ]


def test_utf8_with_a_byte_order_mark_and_unicode_values() -> None:
    assert parse('\ufeff{"probe": "Ä µm"}'.encode()) == [("probe", "Ä µm", "")]


@pytest.mark.parametrize(("doc", "says"), [
    (b'{"a": "x"', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'["a", "b"]', "expected a JSON object"),
    (b'"text"', "expected a JSON object"),
    (b'{"a": null}', "null is not a value"),
    (b'{"a": [null]}', "null is not a value"),
    (b'{"a": [["x"]]}', "a list inside a list"),
    (b'{"a": {"value": "x", "unit": "u"}}', "needs \"value\" and may have \"units\""),
    (b'{"a": {"units": "u"}}', "needs \"value\""),
    (b'{"a": {"value": "x", "units": true}}', "\"units\" must be a string"),
    (b'{"a": {"value": {"value": 1}}}', "\"units\" must be a string and \"value\""),
    (b'{"a": "x", "a": "y"}', "'a' appears twice"),
    (b'{"": "x"}', "empty attribute"),
    (b'{"a": ""}', "empty value of 'a'"),
    (b'{"a": "x\\u0000y"}', "NUL"),
    (b'{"a": NaN}', "NaN is not a value"),
    (b'{"a": "' + b"v" * 2701 + b'"}', "value of 'a' is 2701 bytes long (iRODS keeps at most 2700)"),
    (b'{"a": "' + "é".encode() * 1351 + b'"}', "2702 bytes long"),
    (b'{"' + b"a" * 2701 + b'": "x"}', "2701 bytes long (iRODS keeps at most 2700)"),
    (b'{"a": {"value": "x", "units": "' + b"u" * 251 + b'"}}', "units of 'a' is 251 bytes long"),
    (b'{"ingestd::zone": "other"}', "'ingestd::zone' is irods-ingestd's own"),
    (b'{"ingestd::source_path": "/x"}', "irods-ingestd's own"),
])
def test_what_cannot_be_taken_says_why(doc: bytes, says: str) -> None:
    with pytest.raises(SidecarError, match=None) as e:
        parse(doc)
    assert says in str(e.value)


def test_the_limits_themselves_are_accepted() -> None:
    assert parse(b'{"' + b"a" * 2700 + b'": "' + b"v" * 2700 + b'"}')[0][1] == "v" * 2700
    assert parse(b'{"a": {"value": "x", "units": "' + b"u" * 250 + b'"}}')[0][2] == "u" * 250


def test_own_names_cover_every_attribute_irods_ingestd_writes() -> None:
    from irods_ingestd.ingest import metadata, zone_provenance

    own = {v for mod in (metadata, zone_provenance) for k, v in vars(mod).items()
           if k.startswith("A_") and isinstance(v, str)}
    own |= {metadata.AVU_PREFIX + "owner", metadata.AVU_PREFIX + "group"}  # the owner extractor
    assert own <= sidecars.OWN_NAMES, own - sidecars.OWN_NAMES


def test_read_absent_symlink_fifo_and_large(tmp_path: Path) -> None:
    assert sidecars.read(str(tmp_path / "none.json"), False) is None
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    got = sidecars.read(str(good), False)
    assert got is not None and got[0] == [("a", "1", "")]
    (tmp_path / "link.json").symlink_to(good)
    with pytest.raises(SidecarError, match="symlink"):
        sidecars.read(str(tmp_path / "link.json"), False)
    assert sidecars.read(str(tmp_path / "link.json"), True) == got
    os.mkfifo(tmp_path / "fifo.json")
    with pytest.raises(SidecarError, match="not a regular file"):
        sidecars.read(str(tmp_path / "fifo.json"), False)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (sidecars.MAX_SIDECAR_BYTES + 1))
    with pytest.raises(SidecarError, match="bytes long"):
        sidecars.read(str(big), False)


def test_where_sidecars_are() -> None:
    assert sidecars.file_sidecar("{name}.metadata.json", "run/L001/s.fastq.gz") == "run/L001/s.fastq.gz.metadata.json"
    assert sidecars.file_sidecar("{name}.json", "top.txt") == "top.txt.json"
    assert sidecars.file_sidecar(".{name}.meta", "a/b") == "a/.b.meta"
    assert sidecars.dir_sidecar("metadata.json", "run/L001/s.fastq.gz") == "run/L001/metadata.json"
    assert sidecars.dir_sidecar("metadata.json", "top.txt") == "metadata.json"


def _zone(tmp_path: Path, body: str) -> object:
    return load(write(tmp_path, GOOD_HEAD + GOOD_ZONE + body)).zones[0]


def test_sidecars_are_not_ingested_unless_configured(tmp_path: Path) -> None:
    z = _zone(tmp_path, 'sidecar = "{name}.metadata.json"\ndir_sidecar = "metadata.json"\n')
    f = NameFilter.for_zone(z)  # type: ignore[arg-type]
    for name, why in (("s.fastq.gz.metadata.json", "sidecar"), ("metadata.json", "sidecar"),
                      ("s.fastq.gz", None), ("metadata.json.bak", None), (".metadata.json", None)):
        assert f.reason_to_skip(name, f"run/{name}") == why, name
        assert f.wanted(name, lambda n=name: f"run/{n}") == (why is None), name
    z = _zone(tmp_path, 'sidecar = "{name}.metadata.json"\nsidecar_ingest = true\n')
    assert NameFilter.for_zone(z).reason_to_skip("s.metadata.json", "s.metadata.json") is None  # type: ignore[arg-type]
    z = _zone(tmp_path, 'exclude = ["x/*.bam"]\ndir_sidecar = "meta[1].json"\n')  # the slow path, literal name
    f = NameFilter.for_zone(z)  # type: ignore[arg-type]
    assert f.fast is None
    assert f.reason_to_skip("meta[1].json", "meta[1].json") == "sidecar"
    assert f.reason_to_skip("meta1.json", "meta1.json") is None


def test_settings_reach_the_zone_and_switch_extractors_on(tmp_path: Path) -> None:
    z = _zone(tmp_path, "path_regex = '^(?P<run>[^/]+)/(?P<lane>L\\d+)/'\navu_prefix = 'seq::'\n"
                        "sidecar = '{name}.metadata.json'\npath_regex_required = true\n")
    a = z.avus  # type: ignore[attr-defined]
    assert (a.path_regex, a.avu_prefix, a.path_regex_required, a.sidecar) == \
        ("^(?P<run>[^/]+)/(?P<lane>L\\d+)/", "seq::", True, "{name}.metadata.json")
    assert a.extractors() == ("path", "sidecar")
    assert _zone(tmp_path, "").avus.extractors() == ()  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "says"), [
    ("path_regex = '(?P<run>[^/]+'\n", "zone 'seq'.path_regex: does not compile"),
    ("path_regex = '^([^/]+)/'\n", "zone 'seq'.path_regex: has no named group"),
    ("path_regex = '(?P<zone>.*)'\n", "zone 'seq'.path_regex: group 'zone' makes the attribute 'ingestd::zone'"),
    ("path_regex = 7\n", "zone 'seq'.path_regex: expected str"),
    ("path_regex_required = true\n", "zone 'seq'.path_regex_required: needs a path_regex"),
    ("avu_prefix = \"a\\u0000\"\n", "zone 'seq'.avu_prefix: holds a NUL"),
    ("sidecar = 'meta.json'\n", "zone 'seq'.sidecar: 'meta.json' must hold {name}"),
    ("sidecar = '{name}'\n", "zone 'seq'.sidecar"),
    ("sidecar = 'meta/{name}.json'\n", "zone 'seq'.sidecar"),
    ("sidecar = '{name}.{ext}'\n", "zone 'seq'.sidecar"),
    ("dir_sidecar = 'a/metadata.json'\n", "zone 'seq'.dir_sidecar: 'a/metadata.json' must be a file name"),
    ("dir_sidecar = '..'\n", "zone 'seq'.dir_sidecar"),
    ("sidecar_ingest = 'yes'\n", "zone 'seq'.sidecar_ingest: expected bool"),
    ("metadata = ['path']\n", "zone 'seq'.metadata: the 'path' extractor is switched on by path_regex"),
    ("metadata = ['sidecar']\n", "zone 'seq'.metadata: the 'sidecar' extractor is switched on by sidecar"),
])
def test_check_config_names_zone_and_field(tmp_path: Path, body: str, says: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, GOOD_HEAD + GOOD_ZONE + body))
    assert says in str(e.value), str(e.value)


def test_plan_says_a_sidecar_is_a_sidecar(tmp_path: Path) -> None:
    f = NameFilter.for_zone(_zone(tmp_path, 'sidecar = "{name}.metadata.json"\n'))  # type: ignore[arg-type]
    assert "metadata sidecar" in (f.explain("a.metadata.json", "a.metadata.json") or "")
