"""Session 4 probes, configuration: bad values each refused by `check-config --offline` with exit 2 and a
message naming the zone and the field, and by `run` at start with the same message (before it touches
Redis: the Redis URL here answers nowhere)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def config(tmp: Path, zone_lines: str) -> Path:
    (tmp / "land").mkdir(exist_ok=True)
    (tmp / "env.json").write_text("{}")
    cfg = tmp / "config.toml"
    cfg.write_text(f'[redis]\nurl = "redis://127.0.0.1:1/0"\n[irods]\nenvironment_file = "{tmp}/env.json"\n'
                   f'[queue]\nname = "x"\n[[zone]]\nname = "za"\n{zone_lines}\n')
    cfg.chmod(0o600)
    return cfg


def cli(cfg: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(cfg), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


P = 'path = "{tmp}/land"'
C = 'collection = "/tempZone/home/rods/za"'

# the zone's lines (besides its name) → what the message must say
BAD = {
    "negative settle (number)": (f"{P}\n{C}\nsettle = -3", "zone 'za'.settle: "),
    "negative settle (text)": (f"{P}\n{C}\nsettle = \"-1s\"", "zone 'za'.settle: "),
    "settle nan": (f"{P}\n{C}\nsettle = nan", "zone 'za'.settle: "),
    "settle inf": (f"{P}\n{C}\nsettle = inf", "zone 'za'.settle: "),
    "rescan nan": (f"{P}\n{C}\nrescan = nan", "zone 'za'.rescan: "),
    "rescan inf": (f"{P}\n{C}\nrescan = inf", "zone 'za'.rescan: "),
    "poll_interval nan": (f"{P}\n{C}\npoll_interval = nan", "zone 'za'.poll_interval: "),
    "after_hold nan": (f"{P}\n{C}\nafter_hold = nan", "zone 'za'.after_hold: "),
    "settle a boolean": (f"{P}\n{C}\nsettle = true", "zone 'za'.settle: "),
    "unknown key": (f"{P}\n{C}\nsetle = \"1s\"", "zone 'za': unknown key 'setle'"),
    "wrong type": (f"{P}\n{C}\nresource = 5", "zone 'za'.resource: "),
    "unknown after-action": (f"{P}\n{C}\nafter = \"shred\"", "zone 'za'.after: "),
    "move_to inside the zone": (f"{P}\n{C}\nafter = \"move\"\nmove_to = \"{{tmp}}/land/done\"", "zone 'za'.move_to: "),
    "collection not absolute": (f"{P}\ncollection = \"tempZone/home/rods/za\"", "zone 'za'.collection: "),
    "relative path": (f"path = \"land\"\n{C}", "zone 'za'.path: "),
    "empty path": (f"path = \"\"\n{C}", "zone 'za'.path: "),
    "relative move_to": (f"{P}\n{C}\nafter = \"move\"\nmove_to = \"done\"", "zone 'za'.move_to: "),
    "NUL in path": (f"path = \"{{tmp}}/la\\u0000nd\"\n{C}", "zone 'za'.path: "),
    "NUL in move_to": (f"{P}\n{C}\nafter = \"move\"\nmove_to = \"/tmp/x\\u0000y\"", "zone 'za'.move_to: "),
    "NUL in collection": (f"{P}\ncollection = \"/tempZone/home/rods/a\\u0000b\"", "zone 'za'.collection: "),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_value_is_refused_by_check_config_and_run_naming_zone_and_field(tmp_path, case):
    lines, expected = BAD[case]
    cfg = config(tmp_path, lines.replace("{tmp}", str(tmp_path)))
    r = cli(cfg, "check-config", "--offline")
    assert r.returncode == 2, f"check-config accepted it ({case}): {r.stdout}{r.stderr}"
    assert expected in r.stderr, r.stderr
    r = cli(cfg, "run")
    assert r.returncode == 2, r.stderr
    assert expected in r.stderr, r.stderr


def test_a_huge_but_finite_duration_is_accepted(tmp_path):
    cfg = config(tmp_path, f"path = \"{tmp_path}/land\"\n{C}\nrescan = \"3650d\"")
    r = cli(cfg, "check-config", "--offline")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("key", ["environment_file", "password_file"])
def test_a_relative_irods_file_is_refused(tmp_path, key):
    cfg = config(tmp_path, f"path = \"{tmp_path}/land\"\n{C}")
    text = cfg.read_text()
    if key == "environment_file":
        text = text.replace(f'environment_file = "{tmp_path}/env.json"', 'environment_file = "env.json"')
    else:
        text = text.replace("[queue]", 'password_file = "irods-password"\n[queue]')
    cfg.write_text(text)
    for args in (("check-config", "--offline"), ("run",)):
        r = cli(cfg, *args)
        assert r.returncode == 2, r.stdout + r.stderr
        assert f"[irods].{key}: " in r.stderr and "must be an absolute path" in r.stderr, r.stderr


# -- two daemons' zones (daemonclaims.conflict: pure) ----------------------------------------------------
def _claim(tmp: Path, zone: str, host: str, path: str, coll: str):  # type: ignore[no-untyped-def]
    from irods_ingestd.config_paths import place
    from irods_ingestd.daemonclaims import Claim

    return Claim(zone, f"token-{zone}", host, coll, place(tmp / path))


@pytest.mark.parametrize("a, b, overlap", [
    (("h", "L", "/t/a"), ("h", "L", "/t/b"), "paths"),
    (("h", "L", "/t/a"), ("h", "L/sub", "/t/b"), "paths"),
    (("h", "L/sub", "/t/a"), ("h", "L", "/t/b"), "paths"),
    (("h", "L", "/t/a"), ("h", "L2", "/t/b"), None),  # L2 is not inside L
    (("h", "L", "/t/a"), ("other", "L", "/t/b"), None),  # another host's L is another disk, as far as we know
    (("h", "L", "/t/a"), ("other", "M", "/t/a"), "collections"),  # iRODS is one for all hosts
    (("h", "L", "/t/a"), ("h", "M", "/t/a/sub"), "collections"),
    (("h", "L", "/t/a"), ("h", "M", "/t/ab"), None),  # /t/ab is not inside /t/a
])
def test_two_daemons_zones_overlap(tmp_path, a, b, overlap):
    from irods_ingestd.daemonclaims import Claim, conflict

    for d in ("L/sub", "L2", "M"):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
    ca, cb = _claim(tmp_path, "a", *a), _claim(tmp_path, "b", *b)
    why = conflict(ca, cb)
    assert (why is None) == (overlap is None), why
    if overlap:
        assert f"their {overlap} overlap" in why  # type: ignore[operator]
    back = Claim.from_json(ca.to_json())
    assert back == ca


def test_a_symlink_into_another_daemons_zone_overlaps(tmp_path):
    from irods_ingestd.daemonclaims import conflict

    (tmp_path / "L" / "sub").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "L" / "sub")
    why = conflict(_claim(tmp_path, "b", "h", "link", "/t/b"), _claim(tmp_path, "a", "h", "L", "/t/a"))
    assert why is not None and "their paths overlap" in why and "really" in why
