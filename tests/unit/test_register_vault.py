"""A landing path inside (or holding) a resource's vault: never registered, refused by check-config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from irods_ingestd import register_check as rc

VAULTS = {"demoResc": "/var/lib/irods/Vault", "other": "/srv/vault2", "sibling": "/data/Vault"}


@dataclass
class Z:
    name: str
    path: Path
    mode: str = "register"


def test_vault_holding_compares_whole_components() -> None:
    assert rc.vault_holding("/var/lib/irods/Vault/home/x.dat", VAULTS) == ("demoResc", "/var/lib/irods/Vault")
    assert rc.vault_holding("/var/lib/irods/Vault", VAULTS) == ("demoResc", "/var/lib/irods/Vault")
    assert rc.vault_holding("/var/lib/irods/Vault2/x.dat", VAULTS) is None  # a prefix is not a parent
    assert rc.vault_holding("/data/landing/x.dat", VAULTS) is None


def test_vault_refusal_names_the_resource() -> None:
    why = rc.vault_refusal("/srv/vault2/a/b.dat", lambda: VAULTS, "unit-test")
    assert why is not None and "'other'" in why and "/srv/vault2" in why and "irm" in why
    assert rc.vault_refusal("/srv/landing/b.dat", lambda: VAULTS, "unit-test") is None


def test_zone_vault_problems_both_ways() -> None:
    zones = [Z("in", Path("/var/lib/irods/Vault/landing")), Z("holds", Path("/data"), "put"),
             Z("fine", Path("/data/landing"))]
    got = rc.zone_vault_problems(zones, lambda resc: VAULTS)
    assert len(got) == 2, got
    assert got[0].startswith("zone 'in'.path: /var/lib/irods/Vault/landing is inside the vault of iRODS resource "
                             "'demoResc'") and "irm" in got[0]
    assert got[1].startswith("zone 'holds'.path: /data is holding the vault of iRODS resource 'sibling'") and \
        "replicas" in got[1]


def test_bits_decide_unless_an_acl_is_on_the_file_or_above(tmp_path: Path) -> None:
    import os
    import struct

    d = tmp_path / "a" / "b"
    d.mkdir(parents=True)
    f = d / "x.dat"
    f.write_bytes(b"x")
    assert rc.bits_decide(str(f))
    und = 0xFFFFFFFF
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in
                                          [(0x01, 7, und), (0x02, 0, 12345), (0x04, 5, und), (0x10, 5, und),
                                           (0x20, 5, und)])
    try:
        os.setxattr(tmp_path / "a", "system.posix_acl_access", acl)
    except OSError:
        return  # no POSIX ACLs on this file system: the bits decide everywhere
    rc._cache.clear()
    assert not rc.bits_decide(str(f))
    os.removexattr(tmp_path / "a", "system.posix_acl_access")
    rc._cache.clear()
    os.setxattr(f, "system.posix_acl_access", acl)
    assert not rc.bits_decide(str(f))


def test_a_register_zone_with_after_delete_or_move_is_refused(tmp_path: Path) -> None:
    """Deleting or moving a registered file would leave its object pointing at nothing: the file is the data."""
    import pytest

    from irods_ingestd.config import ConfigError, load
    from tests.unit.test_config import GOOD_HEAD, GOOD_ZONE, write

    for after in ("delete", "move"):
        extra = f"mode = 'register'\nafter = '{after}'\n"
        extra += f"move_to = '{tmp_path}/done'\n" if after == "move" else ""
        (tmp_path / "done").mkdir(exist_ok=True)
        with pytest.raises(ConfigError) as e:
            load(write(tmp_path, GOOD_HEAD + GOOD_ZONE + extra))
        assert "zone 'seq'.after" in str(e.value) and "register-mode zone keeps its files" in str(e.value), str(e.value)
