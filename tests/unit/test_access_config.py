"""The zone's access part (acl, inherit, min_replicas, replicate_to): every bad value is refused by check-config
naming the zone and the field; good values reach the workers' ZoneSpec as a plain record."""

from __future__ import annotations

from pathlib import Path

import pytest

from irods_ingestd.config import ConfigError, load
from irods_ingestd.job import ZoneSpec
from irods_ingestd.zoneparts.access import Access, Rule, parse_rule, per_object
from tests.unit.test_config import GOOD_HEAD, GOOD_ZONE, write

BAD = [
    ("level", "acl = ['admin:alice']", "zone 'seq'.acl: 'admin:alice': level 'admin' is not one of null, read"),
    ("no level", "acl = ['alice']", "zone 'seq'.acl: 'alice' is not LEVEL:NAME"),
    ("bad name", "acl = ['read:al ice']", "zone 'seq'.acl: 'read:al ice': 'al ice' is not an iRODS user or group"),
    ("empty name", "acl = ['read:']", "zone 'seq'.acl: 'read:': '' is not an iRODS user"),
    ("two zones", "acl = ['read:a#b#c']", "zone 'seq'.acl: 'read:a#b#c'"),
    ("twice", "acl = ['read:alice', 'own:alice']", "zone 'seq'.acl: alice is given twice"),
    ("not a list", "acl = 3", "zone 'seq'.acl: expected a list"),
    ("inherit type", "inherit = 'yes'", "zone 'seq'.inherit: expected bool"),
    ("min zero", "after = 'delete'\nmin_replicas = 0", "zone 'seq'.min_replicas: must be at least 1"),
    ("min type", "after = 'delete'\nmin_replicas = '2'", "zone 'seq'.min_replicas: expected int"),
    ("min with keep", "min_replicas = 2", "zone 'seq'.min_replicas: only used with after = \"delete\" or \"move\""),
    ("replicate with keep", "replicate_to = 'resc2'", "zone 'seq'.replicate_to: only used with after"),
    ("bad resource", "after = 'delete'\nreplicate_to = ['a b']", "zone 'seq'.replicate_to: 'a b' is not an iRODS"),
    ("resource twice", "after = 'delete'\nreplicate_to = ['r2', 'r2']", "zone 'seq'.replicate_to: a resource is"),
    ("own resource", "after = 'delete'\nresource = 'r2'\nreplicate_to = 'r2'", "is the zone's resource"),
    ("replicate type", "after = 'delete'\nreplicate_to = 2", "zone 'seq'.replicate_to: expected a resource name"),
]


@pytest.mark.parametrize(("label", "extra", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_access_is_refused_naming_zone_and_field(tmp_path: Path, label: str, extra: str, message: str) -> None:
    p = write(tmp_path, GOOD_HEAD + GOOD_ZONE + extra + "\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert message in str(e.value), str(e.value)


def test_good_access_reaches_the_worker(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD_HEAD + GOOD_ZONE + "after = 'delete'\nacl = ['read:lab', 'own:boss#otherZone', "
                        "'null:public']\ninherit = true\nreplicate_to = ['r2', 'r3']\n")
    z = load(p).zones[0]
    assert z.access == Access(acl=("read:lab", "own:boss#otherZone", "null:public"), inherit=True,
                              min_replicas=3, replicate_to=("r2", "r3"))
    spec = ZoneSpec.from_record(ZoneSpec.from_config(z).to_record())
    assert spec.access == z.access
    assert not per_object(spec.access)  # inheritance gives the objects their ACLs


def test_defaults_change_nothing(tmp_path: Path) -> None:
    z = load(write(tmp_path, GOOD_HEAD + GOOD_ZONE)).zones[0]
    assert z.access == Access() and z.access.min_replicas == 1 and not per_object(z.access)
    z = load(write(tmp_path, GOOD_HEAD + GOOD_ZONE + "after = 'move'\nmove_to = '@TMP@/landing2'\n"
                             "min_replicas = 2\nacl = 'read:lab'\n")).zones[0]
    assert z.access == Access(acl=("read:lab",), min_replicas=2) and per_object(z.access)


def test_rule_syntax() -> None:
    assert parse_rule("write:alice") == Rule("write", "alice", "")
    assert parse_rule("own:lab.admins#otherZone").who == "lab.admins#otherZone"
    assert str(parse_rule("read:a@b.org")) == "read:a@b.org"
