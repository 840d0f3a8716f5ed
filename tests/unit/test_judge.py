"""The judgement of an object found under a landing file's name (ingest/judge.py), which the worker acts on
and the plan reports: present, an update (kept, replaced, re-registered) or a conflict with its reason."""

from __future__ import annotations

import dataclasses

import pytest

from irods_ingestd import names
from irods_ingestd.ingest import judge
from irods_ingestd.ingest.metadata import A_SOURCE_PATH, A_ZONE
from irods_ingestd.job import FileItem, ZoneSpec

ZONE = ZoneSpec("z", "/landing", "/tempZone/c")
ITEM = FileItem("run/a.dat", 10, 1)
TARGET = names.target_for(ZONE.collection, ITEM.rel)
OURS = {A_ZONE: "z", A_SOURCE_PATH: "/landing/run/a.dat"}


def test_the_same_content_is_present() -> None:
    assert judge.judge(ZONE, ITEM, TARGET, True).verdict == judge.PRESENT


@pytest.mark.parametrize(("mode", "versions", "update"), [("put", "keep", judge.KEPT),
                                                          ("put", "replace", judge.REPLACED),
                                                          ("register", "keep", judge.REREGISTERED),
                                                          ("register", "conflict", judge.REREGISTERED)])
def test_this_zones_earlier_version_is_updated(mode: str, versions: str, update: str) -> None:
    z = dataclasses.replace(ZONE, mode=mode, versions=versions)
    j = judge.judge(z, ITEM, TARGET, False, OURS)
    assert (j.verdict, j.update) == (judge.UPDATE, update)


def test_versions_conflict_refuses_an_earlier_version_in_put_mode() -> None:
    j = judge.judge(dataclasses.replace(ZONE, versions="conflict"), ITEM, TARGET, False, OURS)
    assert (j.verdict, j.conflict) == (judge.CONFLICT, judge.EARLIER)
    assert j.conflict_reason("/p", "3 bytes") == '/p holds an earlier version of this file (3 bytes); ' \
                                                 'versions = "conflict"'


@pytest.mark.parametrize(("avus", "by"), [({}, "not made by irods-ingestd"),
                                          ({A_ZONE: "y", A_SOURCE_PATH: "/o/a.dat"}, "made from /o/a.dat in zone y"),
                                          ({A_ZONE: "z", A_SOURCE_PATH: "/landing/run/b.dat"},
                                           "made from /landing/run/b.dat in zone z")])
def test_anything_else_is_a_conflict_naming_who_made_it(avus: dict[str, str], by: str) -> None:
    j = judge.judge(ZONE, ITEM, TARGET, False, avus)
    assert (j.verdict, j.conflict, j.made_by) == (judge.CONFLICT, judge.OTHERS, by)
    assert j.conflict_reason("/p", "3 bytes") == f"/p exists with other content (3 bytes), {by}"


def test_a_collection_provenance_register_zone_owns_what_points_into_it() -> None:
    z = dataclasses.replace(ZONE, mode="register", provenance="collection")
    assert judge.judge(z, ITEM, TARGET, False, {}, ["/landing/run/a.dat"]).verdict == judge.UPDATE
    assert judge.judge(z, ITEM, TARGET, False, {}, ["/elsewhere/a.dat"]).verdict == judge.CONFLICT
