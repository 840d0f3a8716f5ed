"""Verification in the server's own checksum scheme, and what check-config says about the server's
reading of register zones.

Verification in the server's own checksum scheme: a real iRODS 5.0.2 switched to MD5
(`default_hash_scheme` in server_config.json) answers MD5 hex checksums; every file must still verify."""

from __future__ import annotations

import hashlib
import os

import pytest

from irods_ingestd import checksums
from tests.expect import sha2
from tests.integration.test_ingest import Env, env, objects_under  # noqa: F401 - the fixture
from tests.real_irods import server_config


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_md5_server_verifies_puts_and_registers_then_sha256_again(env: Env) -> None:  # noqa: F811
    if not env.irods.real:
        pytest.skip("switches the real iRODS server to MD5")
    data = {f"m/{i}.dat": os.urandom(1000 * i + 1) for i in range(4)}
    with server_config(default_hash_scheme="MD5"):
        ctx = env.ctx()
        items = [env.write(rel, b) for rel, b in data.items()]
        s = env.run(ctx, items)
        assert s["ingested"] == 4 and s["failed"] == 0, (s, list(ctx.ledger.failures("z1")))
        assert ctx.hash_scheme == checksums.MD5
        reg = env.ctx(mode="register", collection=env.coll + "-reg")
        r = env.run(reg, items)
        assert r["ingested"] == 4 and r["failed"] == 0, (r, list(reg.ledger.failures("z1")))
        with env.session() as sess:
            put_objs = objects_under(sess, env.coll + "/")
            reg_objs = objects_under(sess, env.coll + "-reg/")
        for rel, b in data.items():
            assert put_objs[f"{env.coll}/{rel}"][1] == md5(b)  # the server's scheme, verified by us
            assert reg_objs[f"{env.coll}-reg/{rel}"][1] == md5(b)
        again = env.run(env.ctx(), items)
        assert again["already_present"] == 4, again
    # back to SHA256: objects that carry MD5 checksums are recognised (no copy, no conflict)
    ctx = env.ctx()
    assert env.run(ctx, items)["already_present"] == 4
    new = env.write("m/new.dat", b"after the switch back")
    assert env.run(ctx, [new])["ingested"] == 1
    assert ctx.hash_scheme == checksums.SHA2
    with env.session() as sess:
        assert objects_under(sess, env.coll + "/")[f"{env.coll}/m/new.dat"][1] == sha2(b"after the switch back")


def test_check_config_warns_about_a_register_zone_the_server_cannot_read(tmp_path, redis_server) -> None:  # type: ignore[no-untyped-def]
    import pwd
    import subprocess
    import sys

    from tests.landing import server_readable

    try:
        pwd.getpwnam("irods")
    except KeyError:
        pytest.skip("no local iRODS service account")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    public = server_readable(tmp_path.parent / f"{tmp_path.name}-public")
    env_file = tmp_path / "env.json"
    env_file.write_text("{}")
    cfg = tmp_path / "config.toml"
    zones = "".join(f'[[zone]]\nname = "{n}"\npath = "{p}"\ncollection = "/tempZone/home/rods/{n}"\n'
                    f'mode = "register"\n' for n, p in (("hidden", private), ("open", public)))
    cfg.write_text(f'[redis]\nurl = "{redis_server.url}"\n[irods]\nenvironment_file = "{env_file}"\n{zones}')
    cfg.chmod(0o600)
    r = subprocess.run([sys.executable, "-m", "irods_ingestd", "-c", str(cfg), "check-config", "--offline"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr  # a hint, not a refusal: the server may run on another host
    assert "zone 'hidden'" in r.stderr and "irods" in r.stderr and "UNIX_FILE_STAT_ERR" in r.stderr, r.stderr
    assert "zone 'open'" not in r.stderr, r.stderr
