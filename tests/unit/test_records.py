"""Zone parts travel in job records as plain dicts and come back equal, whatever the worker's version."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from irods_ingestd import notify, records
from irods_ingestd.config import validate
from irods_ingestd.job import Batch, FileItem, ZoneSpec


@dataclass(frozen=True)
class Part:
    name: str = "x"
    pairs: tuple[tuple[str, str], ...] = ()
    where: str = ""
    levels: tuple[str, ...] = field(default=("a",))


def test_a_part_comes_back_equal_with_tuples_not_lists() -> None:
    p = Part(name="n", pairs=(("u", "read"), ("g", "own")), where=str(Path("/a")), levels=("b", "c"))
    rec = records.as_record(p)
    assert rec == {"name": "n", "pairs": [["u", "read"], ["g", "own"]], "where": "/a", "levels": ["b", "c"]}
    assert records.from_record(Part, rec) == p


def test_unknown_keys_are_ignored_and_missing_ones_take_defaults() -> None:
    assert records.from_record(Part, {"name": "m", "future_key": 1}) == Part(name="m")
    assert records.from_record(Part, None) == Part()


def test_a_zone_spec_survives_its_job_record() -> None:
    cfg = validate({"irods": {"environment_file": "/x"},
                    "zone": [{"name": "z", "path": "/l", "collection": "/t/z"}]}, check_paths=False)
    spec = ZoneSpec.from_config(cfg.zones[0])
    batch = Batch(zone=spec, files=(FileItem("a/b", 1, 2),))
    again = Batch.from_record(batch.to_record())
    assert again.zone == spec and again.files == batch.files
    old = batch.to_record()
    for part in ("completion", "avus", "access"):
        del old["zone"][part]  # a record of a daemon older than the parts
    assert Batch.from_record(old).zone == spec


def test_a_webhook_url_never_goes_into_a_job_record() -> None:
    url = "https://hooks.example/ingest?token=s3cr3t"
    cfg = validate({"irods": {"environment_file": "/x"},
                    "zone": [{"name": "z", "path": "/l", "collection": "/t/z", "webhook": url}]}, check_paths=False)
    spec = ZoneSpec.from_config(cfg.zones[0])
    assert spec.notify.webhook == url
    rec = Batch(zone=spec, files=(FileItem("a", 1, 2),)).to_record()
    assert "s3cr3t" not in repr(rec) and "hooks.example" not in repr(rec)
    assert notify.of(cfg, "z").webhook == url and notify.of(cfg, "other").webhook == ""
