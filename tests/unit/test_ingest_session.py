"""irods_session password lookup and ingest's error classification (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import irods.exception as iex
import pytest

from irods_ingestd import checksums, ingest
from irods_ingestd.config import IrodsConfig, QueueConfig
from irods_ingestd.irods_session import SessionError, SessionHolder, load_password, make_session


def _env(tmp_path: Path) -> Path:
    p = tmp_path / "irods_environment.json"
    p.write_text(json.dumps({"irods_host": "127.0.0.1", "irods_port": 1, "irods_user_name": "u",
                             "irods_zone_name": "z"}))
    return p


def test_password_sources_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pwfile = tmp_path / "pwfile"
    pwfile.write_text("from-file\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "irods-password").write_text("from-credentials\n")
    cfg = IrodsConfig(environment_file=_env(tmp_path), password_file=pwfile, password="inline")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert load_password(IrodsConfig(password="inline")) == "inline"
    assert load_password(IrodsConfig()) is None
    assert load_password(cfg) == "from-file"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_password(cfg) == "from-credentials"


def test_missing_password_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(SessionError, match="password file"):
        load_password(IrodsConfig(password_file=tmp_path / "nope"))


def test_session_uses_the_password_and_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    s = make_session(IrodsConfig(environment_file=_env(tmp_path), password="p4ss", connection_timeout=7))
    try:
        assert (s.host, s.port, s.username, s.zone) == ("127.0.0.1", 1, "u", "z")
        assert s.pool.account.password == "p4ss"
        assert s.connection_timeout == 7
    finally:
        s.cleanup()


def test_bad_environment_file(tmp_path: Path) -> None:
    bad = tmp_path / "env.json"
    bad.write_text("{")
    with pytest.raises(SessionError, match="not valid JSON"):
        make_session(IrodsConfig(environment_file=bad, password="x"))
    with pytest.raises(SessionError, match="cannot read"):
        make_session(IrodsConfig(environment_file=tmp_path / "missing.json", password="x"))


def test_holder_is_lazy_and_resets(tmp_path: Path) -> None:
    h = SessionHolder(IrodsConfig(environment_file=_env(tmp_path), password="x"))
    assert h.opened == 0
    s1 = h.get()
    assert h.get() is s1
    h.reset()
    assert h.get() is not s1 and h.opened == 2
    h.cleanup()


@pytest.mark.parametrize("exc,transient", [
    (iex.NetworkException("down"), True),
    (ConnectionResetError(), True),
    (TimeoutError(), True),
    (iex.SYS_SOCK_READ_TIMEDOUT(), True),
    (iex.SYS_HEADER_READ_LEN_ERR(), True),
    (iex.UNIX_FILE_WRITE_ERR(), True),
    (iex.USER_CHKSUM_MISMATCH(), True),
    (iex.CAT_NO_ACCESS_PERMISSION(), False),
    (iex.UNIX_FILE_STAT_ERR(), False),
    (iex.SYS_NO_API_PRIV(), False),
    (iex.CAT_INVALID_AUTHENTICATION(), False),
    (ingest.Conflict("x"), False),
    (ingest.PermanentError("x"), False),
    (ValueError("bug"), False),
])
def test_is_transient(exc: BaseException, transient: bool) -> None:
    assert ingest.is_transient(exc) is transient


def test_backoff_is_exponential_and_capped() -> None:
    q = QueueConfig(backoff=2.0, backoff_max=10.0)
    assert [ingest.backoff_delay(q, i) for i in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_checksum_format() -> None:
    import hashlib
    assert checksums.irods_format(checksums.SHA2, hashlib.sha256(b"").digest()) == \
        "sha2:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
