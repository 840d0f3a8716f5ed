"""Logging for irods-ingestd: native journald fields under systemd, readable lines elsewhere.

Callers attach structured fields and a stable message id::

    log.info("ingested %s", path, extra={
        "fields": {"INGEST_ZONE": zone, "INGEST_PATH": path, "IRODS_PATH": target,
                   "INGEST_BYTES": size, "INGEST_SECONDS": secs, "INGEST_RESULT": "ok"},
        "message_id": MessageId.FILE_INGESTED,
    })

Under journald the fields become journal fields (``journalctl INGEST_ZONE=x``); journald silently
drops lower-case names, so every key is upper-cased and reduced to ``[A-Z0-9_]``. On a terminal or
in a file they are appended to the line as ``KEY=value``. Values of keys that look like secrets
(``*PASSWORD*``, ``*SECRET*``, ``*TOKEN*``) are never written.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import re
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

SYSLOG_IDENTIFIER = "irods-ingestd"
JOURNAL_SOCKET = "/run/systemd/journal/socket"

_sendv: Callable[..., Any] | None
try:  # pragma: no cover - depends on the installed extras
    from systemd import journal as _journal

    _sendv = _journal.sendv
except ImportError:  # pragma: no cover
    _sendv = None

_MESSAGE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_BAD_CHARS_RE = re.compile(r"[^A-Z0-9_]")
_SECRET_RE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL")
# Fields a caller may not set through extra={"fields": ...}: they are the handler's own.
_RESERVED = frozenset({"MESSAGE", "MESSAGE_ID", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_PID"})
_OURS = "_irods_ingestd_handler"

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


# -- fields --------------------------------------------------------------------------------------
def field_name(key: str) -> str | None:
    """A caller's key as a valid journal field name, or None if nothing usable remains.

    Journal field names are upper-case ASCII letters, digits and ``_``, do not start with a digit or
    ``_`` (those are trusted fields set by journald) and are at most 64 characters.
    """
    name = _BAD_CHARS_RE.sub("_", str(key).upper()).lstrip("_")
    if not name:
        return None
    if name[0].isdigit():
        name = "F_" + name
    return name[:64]


def normalize_message_id(value: object) -> str | None:
    """32 lowercase hex characters (dashes of a UUID and upper case tolerated), else None."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("-", "")
    return text if _MESSAGE_ID_RE.match(text) else None


def _value(key: str, value: object) -> str | bytes:
    if _SECRET_RE.search(key):
        return "<redacted>"
    if isinstance(value, bytes):
        return value
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def record_fields(record: logging.LogRecord) -> dict[str, str | bytes]:
    """The validated structured fields of a record (from ``extra={"fields": {...}}``)."""
    raw = getattr(record, "fields", None)
    out: dict[str, str | bytes] = {}
    if not isinstance(raw, Mapping):
        return out
    for key, value in raw.items():
        if value is None:
            continue
        name = field_name(key)
        if name is None or name in _RESERVED:
            continue
        out[name] = _value(name, value)
    return out


# -- journald ------------------------------------------------------------------------------------
def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def encode_native(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """journald's native protocol: ``KEY=value\\n``, or ``KEY\\n<le64 length><value>\\n`` for binary."""
    out = bytearray()
    for key, value in fields:
        data = value.encode("utf-8", "replace") if isinstance(value, str) else value
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class NativeJournalSender:
    """A minimal sd_journal_sendv(): one datagram per entry to journald's native socket.

    Entries too large for one datagram travel in a sealed memfd passed with SCM_RIGHTS, as libsystemd
    does.
    """

    def __init__(self, path: str = JOURNAL_SOCKET) -> None:
        self.path = path
        self._sock: socket.socket | None = None

    def send(self, fields: list[tuple[str, str | bytes]]) -> None:
        data = encode_native(fields)
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in (90, 105):  # EMSGSIZE, ENOBUFS
                raise
            fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                os.write(fd, data)
                # journald accepts a memfd only once it is sealed against changes.
                fcntl.fcntl(
                    fd,
                    fcntl.F_ADD_SEALS,
                    fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL,
                )
                self._sock.sendmsg(
                    [], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))], 0, self.path
                )
            finally:
                os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class JournalHandler(logging.Handler):
    """Send records to journald with MESSAGE, PRIORITY, MESSAGE_ID and the caller's fields.

    Uses ``systemd.journal.sendv`` when systemd-python is installed, else :class:`NativeJournalSender`.
    """

    def __init__(
        self,
        identifier: str = SYSLOG_IDENTIFIER,
        socket_path: str | None = None,
        level: int = logging.NOTSET,
    ) -> None:
        super().__init__(level)
        self.identifier = identifier
        self._native: NativeJournalSender | None = None
        if socket_path is not None or _sendv is None:
            self._native = NativeJournalSender(socket_path or JOURNAL_SOCKET)

    def journal_fields(self, record: logging.LogRecord) -> list[tuple[str, str | bytes]]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        elif record.exc_text:
            message += "\n" + record.exc_text
        if record.stack_info:
            message += "\n" + record.stack_info
        fields: list[tuple[str, str | bytes]] = [
            ("MESSAGE", message),
            ("PRIORITY", str(_syslog_priority(record.levelno))),
            ("SYSLOG_IDENTIFIER", self.identifier),
        ]
        mid = normalize_message_id(getattr(record, "message_id", None))
        if mid:
            fields.append(("MESSAGE_ID", mid))
        fields += [
            ("LOGGER", record.name),
            ("CODE_FILE", record.pathname),
            ("CODE_LINE", str(record.lineno)),
            ("CODE_FUNC", record.funcName),
            ("THREAD_NAME", record.threadName or ""),
        ]
        own = {k for k, _ in fields}
        fields += [(k, v) for k, v in record_fields(record).items() if k not in own]
        return fields

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = self.journal_fields(record)
            if self._native is not None:
                self._native.send(fields)
            elif _sendv is not None:
                _sendv(*(k.encode() + b"=" + (v.encode() if isinstance(v, str) else v) for k, v in fields))
        except Exception:  # noqa: BLE001 - logging.Handler contract
            self.handleError(record)

    def close(self) -> None:
        if self._native is not None:
            self._native.close()
        super().close()


# -- stderr --------------------------------------------------------------------------------------
_PLAIN_VALUE_RE = re.compile(r"^[^\s\"'=\\]+$")


def _quote(value: str | bytes) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if text and _PLAIN_VALUE_RE.match(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class FieldsFormatter(logging.Formatter):
    """``2026-11-27 10:00:00 INFO irods_ingestd.daemon: message KEY=value ...``"""

    default_time_format = "%Y-%m-%d %H:%M:%S"

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime(datefmt or self.default_time_format, self.converter(record.created))

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        line = super().formatMessage(record)
        fields = record_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return line


# -- setup ---------------------------------------------------------------------------------------
def stderr_is_journal(environ: Mapping[str, str] | None = None, fd: int | None = None) -> bool:
    """True when stderr is the journal stream systemd connected (``JOURNAL_STREAM=dev:ino``)."""
    env = os.environ if environ is None else environ
    value = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":", 1))
    except ValueError:
        return False
    try:
        st = os.fstat(sys.stderr.fileno() if fd is None else fd)
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    text = str(level).strip().lower()
    if text.isdigit():
        return int(text)
    try:
        return _LEVELS[text]
    except KeyError:
        raise ValueError(f"unknown log level {level!r} (use one of {', '.join(_LEVELS)})") from None


def setup_logging(level: str = "info", target: str = "auto") -> None:
    """Configure the root logger once (calling again replaces what an earlier call installed).

    ``target``: ``auto`` (journald when stderr is connected to the journal, else stderr), ``journal``
    or ``stderr``.
    """
    lvl = parse_level(level)
    if target not in ("auto", "journal", "stderr"):
        raise ValueError(f"unknown log target {target!r} (use auto, journal or stderr)")
    use_journal = target == "journal" or (target == "auto" and stderr_is_journal())
    if use_journal and _sendv is None and not os.path.exists(JOURNAL_SOCKET):
        use_journal = False
    handler: logging.Handler
    if use_journal:
        handler = JournalHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(FieldsFormatter())
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _OURS, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(lvl)
