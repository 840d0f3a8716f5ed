"""Config validation: every bad config is rejected with a message naming the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from irods_ingestd.config import ConfigError, load, parse_duration, parse_size


def write(tmp: Path, body: str) -> Path:
    (tmp / "landing").mkdir(exist_ok=True)
    (tmp / "landing2").mkdir(exist_ok=True)
    env = tmp / "env.json"
    env.write_text("{}")
    p = tmp / "config.toml"
    p.write_text(body.replace("@TMP@", str(tmp)))
    return p


GOOD_HEAD = """
[redis]
url = "redis://127.0.0.1:6379/0"
[irods]
environment_file = "@TMP@/env.json"
"""
GOOD_ZONE = """
[[zone]]
name = "seq"
path = "@TMP@/landing"
collection = "/tempZone/home/rods/seq"
"""

BAD = [
    ("unknown top key", GOOD_HEAD + GOOD_ZONE + "colour = 'red'\n", "unknown key 'colour'"),
    ("unknown zone key", GOOD_HEAD + GOOD_ZONE + "setle = '3s'\n", "zone 'seq': unknown key 'setle'"),
    ("missing directory", GOOD_HEAD + GOOD_ZONE.replace("landing", "nowhere"), "zone 'seq'.path"),
    ("relative path", GOOD_HEAD + GOOD_ZONE.replace("@TMP@/landing", "landing"), "must be an absolute path"),
    ("bad duration", GOOD_HEAD + GOOD_ZONE + "settle = 'soon'\n", "zone 'seq'.settle: not a duration"),
    ("settle zero", GOOD_HEAD + GOOD_ZONE + "settle = 0\n", "zone 'seq'.settle: must be at least 0.1s"),
    ("negative duration", GOOD_HEAD + GOOD_ZONE + "settle = -1\n", "zone 'seq'.settle: negative duration"),
    ("bad mode", GOOD_HEAD + GOOD_ZONE + "mode = 'copy'\n", "zone 'seq'.mode: 'copy' is not one of put, register"),
    ("bad watcher", GOOD_HEAD + GOOD_ZONE + "watcher = 'dnotify'\n", "zone 'seq'.watcher"),
    ("bad collection", GOOD_HEAD + GOOD_ZONE.replace("/tempZone/home/rods/seq", "tempZone/x/"),
     "zone 'seq'.collection"),
    ("dotdot collection", GOOD_HEAD + GOOD_ZONE.replace("/tempZone/home/rods/seq", "/tempZone/../x"),
     "zone 'seq'.collection"),
    ("overlapping zones", GOOD_HEAD + GOOD_ZONE + GOOD_ZONE.replace('"seq"', '"sub"')
     .replace("landing", "landing/inner").replace("rods/seq", "rods/sub"), "their paths overlap"),
    ("overlapping collections", GOOD_HEAD + GOOD_ZONE + GOOD_ZONE.replace('"seq"', '"two"')
     .replace("landing", "landing2").replace("rods/seq", "rods/seq/two"), "their collections overlap"),
    ("same name twice", GOOD_HEAD + GOOD_ZONE + GOOD_ZONE.replace("landing", "landing2")
     .replace("rods/seq", "rods/b"), "the name is used twice"),
    ("no zones", GOOD_HEAD, "no [[zone]] defined"),
    ("move without target", GOOD_HEAD + GOOD_ZONE + "after = 'move'\n", "move_to: required"),
    ("move into the zone", GOOD_HEAD + GOOD_ZONE + "after = 'move'\nmove_to = '@TMP@/landing/done'\n",
     "inside the zone's path"),
    ("register and delete", GOOD_HEAD + GOOD_ZONE + "mode = 'register'\nafter = 'delete'\n",
     "register-mode zone keeps its files"),
    ("bad redis url", GOOD_HEAD.replace("redis://127", "http://127") + GOOD_ZONE, "[redis].url"),
    ("bad sentinel", GOOD_HEAD.replace("[irods]", "sentinels = ['nohost']\n[irods]") + GOOD_ZONE, "must be host:port"),
    ("missing env file", GOOD_HEAD.replace("env.json", "nope.json") + GOOD_ZONE, "[irods].environment_file"),
    ("bad batch size", GOOD_HEAD + "[queue]\nbatch_files = 0\n" + GOOD_ZONE, "[queue].batch_files"),
    ("bad byte size", GOOD_HEAD + "[queue]\nbatch_bytes = 'lots'\n" + GOOD_ZONE, "[queue].batch_bytes"),
    ("wrong type", GOOD_HEAD + GOOD_ZONE + "include = '*.dat'\n", "zone 'seq'.include: expected list"),
    ("zone not a table array", GOOD_HEAD + "[zone]\nname='x'\n", "use [[zone]] tables"),
    ("not TOML", "[[zone]\n", "not valid TOML"),
    ("bad log level", "log_level = 'loud'\n" + GOOD_HEAD + GOOD_ZONE, "log_level"),
]


@pytest.mark.parametrize("body,expected", [(b, e) for _, b, e in BAD], ids=[n for n, _, _ in BAD])
def test_bad_config_is_rejected_with_a_message(tmp_path, body, expected):
    p = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load(p)
    assert expected in str(e.value)
    assert str(p) in str(e.value)


def test_good_config_loads(tmp_path):
    cfg = load(write(tmp_path, GOOD_HEAD + GOOD_ZONE + "settle = '1.5m'\n[queue]\nbatch_bytes = '64MiB'\n"))
    z = cfg.zone("seq")
    assert z.settle == 90.0 and z.mode == "put" and z.symlinks == "skip" and z.after == "keep"
    assert cfg.queue.batch_bytes == 64 << 20


def test_check_config_cli_exits_nonzero_and_names_the_problem(tmp_path):
    p = write(tmp_path, GOOD_HEAD + GOOD_ZONE + "settle = 'soon'\n")
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "--log-target", "stderr", "-c", str(p),
                        "check-config", "--offline"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "zone 'seq'.settle: not a duration" in r.stderr


def test_check_config_cli_offline_accepts_a_good_file(tmp_path):
    p = write(tmp_path, GOOD_HEAD + GOOD_ZONE)
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p), "check-config", "--offline"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "OK (1 zones: seq)" in r.stdout


def test_password_in_a_world_readable_config_is_refused(tmp_path):
    p = write(tmp_path, GOOD_HEAD + 'password = "s3cret"\n' + GOOD_ZONE)
    p.chmod(0o644)
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p), "check-config", "--offline"],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert "readable by other users" in r.stderr
    assert "s3cret" not in r.stderr + r.stdout
    p.chmod(0o600)
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(p), "check-config", "--offline"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_durations_and_sizes():
    assert parse_duration("250ms") == 0.25 and parse_duration("2h") == 7200 and parse_duration(5) == 5.0
    assert parse_size("1GiB") == 1 << 30 and parse_size("4k") == 4096 and parse_size(10) == 10
    for bad in ("", "1y", "-3s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
