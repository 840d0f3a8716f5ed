"""Logging: the stderr format, journal field validation, and the native journald protocol over a
real unix datagram socket standing in for /run/systemd/journal/socket."""

from __future__ import annotations

import array
import io
import logging
import os
import re
import socket
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from irods_ingestd import logsetup
from irods_ingestd.logsetup import (
    FieldsFormatter,
    JournalHandler,
    encode_native,
    field_name,
    normalize_message_id,
    parse_level,
    setup_logging,
    stderr_is_journal,
)
from irods_ingestd.messages import ALL, MessageId

INGEST_FIELDS = {
    "INGEST_ZONE": "zone1",
    "INGEST_PATH": "/landing/zone1/a b.dat",
    "IRODS_PATH": "/tempZone/home/rods/a b.dat",
    "INGEST_BYTES": 4096,
    "INGEST_SECONDS": 0.0251234567,
    "INGEST_RESULT": "ok",
}


def decode_native(data: bytes) -> dict[str, str]:
    """The inverse of journald's native protocol (both the KEY=value and the binary form)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            out[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1 : nl + 9])
            out[line.decode()] = data[nl + 9 : nl + 9 + n].decode()
            assert data[nl + 9 + n : nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return out


@pytest.fixture
def journal_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def make_logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("irods_ingestd.daemon.test")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def recv_entry(sock: socket.socket) -> dict[str, str]:
    data, ancdata, _flags, _addr = sock.recvmsg(1 << 20, socket.CMSG_SPACE(4))
    if ancdata:  # a memfd with the entry
        fds = array.array("i")
        fds.frombytes(ancdata[0][2][: 4])
        with os.fdopen(fds[0], "rb") as fh:
            fh.seek(0)
            data = fh.read()
    return decode_native(data)


# -- message ids -----------------------------------------------------------------------------------
def test_message_ids_are_32_lowercase_hex_and_distinct() -> None:
    assert set(ALL) >= {
        "FILE_INGESTED", "FILE_FAILED", "FILE_SKIPPED", "ZONE_WALKING", "ZONE_WATCHING",
        "EVENT_OVERFLOW", "RELOAD", "DAEMON_STARTED", "DAEMON_STOPPING",
    }
    for value in ALL.values():
        assert re.fullmatch(r"[0-9a-f]{32}", value)
    assert len(set(ALL.values())) == len(ALL)


# -- field validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("INGEST_ZONE", "INGEST_ZONE"),
        ("ingest_zone", "INGEST_ZONE"),
        ("ingest-zone.name", "INGEST_ZONE_NAME"),
        ("_TRUSTED", "TRUSTED"),
        ("9LIVES", "F_9LIVES"),
        ("Zoné", "ZON_"),
        ("___", None),
        ("", None),
        ("X" * 100, "X" * 64),
    ],
)
def test_field_name(key: str, expected: str | None) -> None:
    assert field_name(key) == expected


def test_normalize_message_id() -> None:
    assert normalize_message_id(MessageId.FILE_INGESTED) == MessageId.FILE_INGESTED
    assert normalize_message_id("78F797C2-D882-43D9-8BC4-97B0D8892609") == MessageId.FILE_INGESTED
    assert normalize_message_id("not-an-id") is None
    assert normalize_message_id(None) is None


def test_parse_level() -> None:
    assert parse_level("INFO") == logging.INFO
    assert parse_level("warn") == logging.WARNING
    assert parse_level("10") == logging.DEBUG
    with pytest.raises(ValueError):
        parse_level("loud")


# -- stderr format ---------------------------------------------------------------------------------
def test_stderr_format_appends_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FieldsFormatter())
    make_logger(handler).info(
        "ingested %s", "a b.dat", extra={"fields": INGEST_FIELDS, "message_id": MessageId.FILE_INGESTED}
    )
    line = stream.getvalue().rstrip("\n")
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO irods_ingestd\.daemon\.test: ingested a b\.dat "
        r'INGEST_ZONE=zone1 INGEST_PATH="/landing/zone1/a b\.dat" IRODS_PATH="/tempZone/home/rods/a b\.dat" '
        r"INGEST_BYTES=4096 INGEST_SECONDS=0\.0251235 INGEST_RESULT=ok",
        line,
    ), line


def test_stderr_format_plain_message_and_exception() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FieldsFormatter())
    logger = make_logger(handler)
    logger.warning("no fields here")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("failed", extra={"fields": {"note": 'say "hi"\nthere'}})
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("WARNING irods_ingestd.daemon.test: no fields here")
    assert lines[1].endswith('ERROR irods_ingestd.daemon.test: failed NOTE="say \\"hi\\"\\nthere"')
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom"


def test_secrets_are_redacted_everywhere(journal_socket: tuple[str, socket.socket]) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(FieldsFormatter())
    make_logger(handler).info("connect", extra={"fields": {"irods_password": "hunter2", "API_TOKEN": "t0k"}})
    assert "hunter2" not in stream.getvalue() and "t0k" not in stream.getvalue()
    assert "IRODS_PASSWORD=<redacted>" in stream.getvalue()

    path, sock = journal_socket
    make_logger(JournalHandler(socket_path=path)).info("connect", extra={"fields": {"password": "hunter2"}})
    entry = recv_entry(sock)
    assert entry["PASSWORD"] == "<redacted>"


# -- journald native protocol ----------------------------------------------------------------------
def test_encode_native_binary_form_for_newlines() -> None:
    data = encode_native([("A", "x"), ("B", "line1\nline2"), ("C", b"\x00\xff")])
    assert data.startswith(b"A=x\nB\n" + struct.pack("<Q", 11) + b"line1\nline2\nC=\x00\xff\n")
    assert decode_native(encode_native([("A", "x"), ("B", "l1\nl2")])) == {"A": "x", "B": "l1\nl2"}


def test_journal_handler_sends_fields_and_message_id(journal_socket: tuple[str, socket.socket]) -> None:
    path, sock = journal_socket
    logger = make_logger(JournalHandler(socket_path=path))
    logger.info(
        "ingested %s",
        "a b.dat",
        extra={
            "fields": {**INGEST_fields_lower(), "MESSAGE": "spoof", "PRIORITY": "0", "empty": None},
            "message_id": MessageId.FILE_INGESTED,
        },
    )
    entry = recv_entry(sock)
    assert entry["MESSAGE"] == "ingested a b.dat"
    assert entry["PRIORITY"] == "6"
    assert entry["SYSLOG_IDENTIFIER"] == "irods-ingestd"
    assert entry["MESSAGE_ID"] == MessageId.FILE_INGESTED
    assert entry["LOGGER"] == "irods_ingestd.daemon.test"
    assert entry["CODE_FUNC"] == "test_journal_handler_sends_fields_and_message_id"
    assert entry["INGEST_ZONE"] == "zone1"
    assert entry["INGEST_PATH"] == "/landing/zone1/a b.dat"
    assert entry["INGEST_BYTES"] == "4096"
    assert entry["INGEST_RESULT"] == "ok"
    assert "EMPTY" not in entry
    # every field name is one journald keeps
    for key in entry:
        assert re.fullmatch(r"[A-Z0-9][A-Z0-9_]*", key), key


def INGEST_fields_lower() -> dict[str, object]:  # noqa: N802
    return {k.lower(): v for k, v in INGEST_FIELDS.items()}


def test_journal_handler_priorities_and_traceback(journal_socket: tuple[str, socket.socket]) -> None:
    path, sock = journal_socket
    logger = make_logger(JournalHandler(socket_path=path))
    logger.debug("d")
    assert recv_entry(sock)["PRIORITY"] == "7"
    logger.warning("w")
    assert recv_entry(sock)["PRIORITY"] == "4"
    try:
        raise ValueError("bad")
    except ValueError:
        logger.exception("failed", extra={"message_id": MessageId.FILE_FAILED})
    entry = recv_entry(sock)
    assert entry["PRIORITY"] == "3"
    assert entry["MESSAGE_ID"] == MessageId.FILE_FAILED
    assert entry["MESSAGE"].startswith("failed\nTraceback")
    assert entry["MESSAGE"].endswith("ValueError: bad")


def test_journal_handler_drops_invalid_message_id(journal_socket: tuple[str, socket.socket]) -> None:
    path, sock = journal_socket
    make_logger(JournalHandler(socket_path=path)).info("x", extra={"message_id": "FILE_INGESTED"})
    assert "MESSAGE_ID" not in recv_entry(sock)


def test_large_entry_goes_through_memfd(journal_socket: tuple[str, socket.socket]) -> None:
    path, sock = journal_socket
    big = "x" * (1 << 19)  # beyond the default datagram limit (net.core.wmem_default)
    make_logger(JournalHandler(socket_path=path)).info("big", extra={"fields": {"BIG": big}})
    entry = recv_entry(sock)
    assert entry["BIG"] == big


def test_journal_handler_missing_socket_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[logging.LogRecord] = []
    handler = JournalHandler(socket_path=str(tmp_path / "missing"))
    monkeypatch.setattr(handler, "handleError", errors.append)
    make_logger(handler).info("lost")
    assert len(errors) == 1


# -- setup_logging ---------------------------------------------------------------------------------
def test_stderr_is_journal(tmp_path: Path) -> None:
    with open(tmp_path / "f", "w") as fh:
        st = os.fstat(fh.fileno())
        assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, fd=fh.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fd=fh.fileno())
        assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"}, fd=fh.fileno())
        assert not stderr_is_journal({}, fd=fh.fileno())


@pytest.fixture
def clean_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield root
    for h in root.handlers[:]:
        if h not in saved[0]:
            root.removeHandler(h)
    root.setLevel(saved[1])


def test_setup_logging_auto_picks_stderr_off_journal(
    clean_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    setup_logging("debug")
    ours = [h for h in clean_root.handlers if getattr(h, "_irods_ingestd_handler", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, FieldsFormatter)
    assert clean_root.level == logging.DEBUG
    setup_logging("warning", "stderr")  # idempotent: replaces, does not stack
    ours = [h for h in clean_root.handlers if getattr(h, "_irods_ingestd_handler", False)]
    assert len(ours) == 1 and clean_root.level == logging.WARNING


def test_setup_logging_auto_picks_journal_when_stderr_is_journal(
    clean_root: logging.Logger, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with open(tmp_path / "stream", "w") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        monkeypatch.setattr(sys, "stderr", fh)
        monkeypatch.setattr(logsetup.os.path, "exists", lambda p: True)
        setup_logging("info")
    ours = [h for h in clean_root.handlers if getattr(h, "_irods_ingestd_handler", False)]
    assert len(ours) == 1 and isinstance(ours[0], JournalHandler)


def test_setup_logging_rejects_unknown_target(clean_root: logging.Logger) -> None:
    with pytest.raises(ValueError):
        setup_logging("info", "syslog")
