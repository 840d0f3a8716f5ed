"""check-config's hint for register zones: can the server's service account reach the landing files?"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from irods_ingestd.register_check import unreadable_for_service_account
from tests.landing import server_readable


@pytest.fixture
def account() -> str:
    for name in ("irods", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("no unprivileged account on this host")


def test_a_private_directory_is_reported(tmp_path: Path, account: str) -> None:
    zone = tmp_path / "private"
    zone.mkdir()
    os.chmod(zone, 0o700)
    why = unreadable_for_service_account(zone, account)
    assert why is not None and account in why and "UNIX_FILE_STAT_ERR" in why


def test_an_open_directory_passes(tmp_path: Path, account: str) -> None:
    zone = server_readable(tmp_path / "open")
    assert unreadable_for_service_account(zone, account) is None


def test_no_such_account_cannot_tell(tmp_path: Path) -> None:
    assert unreadable_for_service_account(tmp_path, "no-such-user-here") is None


def test_a_workers_answer_for_a_directory_expires(tmp_path: Path, account: str, monkeypatch) -> None:
    """The bulk register path asks per file; a directory's rights revoked (or granted) while the worker runs
    are heeded once the cached answer expires."""
    from irods_ingestd import register_check

    d = server_readable(tmp_path / "zone")
    f = d / "f.dat"
    f.write_bytes(b"x")
    os.chmod(f, 0o644)
    assert register_check.readable_by_service_account(str(f), os.stat(f), account)
    os.chmod(d, 0o700)  # revoked
    assert register_check.readable_by_service_account(str(f), os.stat(f), account)  # cached for now
    monkeypatch.setattr(register_check, "CACHE_SECONDS", 0.0)
    assert not register_check.readable_by_service_account(str(f), os.stat(f), account)
    os.chmod(d, 0o755)  # granted again
    assert register_check.readable_by_service_account(str(f), os.stat(f), account)
