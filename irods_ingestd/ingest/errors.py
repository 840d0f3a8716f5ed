"""What can go wrong with one file, and which of it is worth another attempt."""

from __future__ import annotations

import errno
import os
import socket

import irods.exception as iex

from ..config import QueueConfig


class PermanentError(Exception):
    """Retrying cannot help: the file is marked failed with this reason."""

    kind = "permanent"


class Conflict(PermanentError):
    kind = "conflict"


class LocalChanged(Exception):
    """The landing file is not the version the job was made for (or changed while being copied)."""


class Vanished(Exception):
    pass


class StaleLookup(Exception):
    """The batch's look-up said the object was absent, but it exists now: look again (once)."""


class NotRegular(Exception):
    pass


class LockLost(Exception):
    """This worker's lock on the file expired (it was frozen or cut off): another worker may have it now."""


class CollectionRace(Exception):
    """The collection is still missing after creating it (other workers creating its parents): retry."""


# iRODS errors that are not worth retrying.
_PERMANENT_IRODS = tuple(
    getattr(iex, n) for n in (
        "CAT_NO_ACCESS_PERMISSION", "CAT_INSUFFICIENT_PRIVILEGE_LEVEL", "SYS_NO_API_PRIV", "UNIX_FILE_STAT_ERR",
        "UNIX_FILE_OPEN_ERR", "USER_INPUT_PATH_ERR", "SYS_INVALID_FILE_PATH", "SYS_RESC_DOES_NOT_EXIST",
        "CAT_NAME_EXISTS_AS_COLLECTION", "CAT_NAME_EXISTS_AS_DATAOBJ", "SYS_INVALID_INPUT_PARAM",
        "CAT_INVALID_ARGUMENT", "SYS_NOT_ALLOWED", "SYS_NOT_SUPPORTED", "HIERARCHY_ERROR",
        "USER_INCOMPATIBLE_PARAMS",
    ) if hasattr(iex, n)
)


def is_transient(exc: BaseException) -> bool:
    """Network trouble, a server that is down or slow, SYS_* errors: worth another attempt."""
    if isinstance(exc, PermanentError | LocalChanged | Vanished | NotRegular):
        return False
    if isinstance(exc, CollectionRace | iex.CAT_UNKNOWN_COLLECTION):
        return True  # a collection racing into existence, or removed meanwhile: create it again
    if isinstance(exc, iex.NetworkException | ConnectionError | TimeoutError | socket.timeout | EOFError):
        return True
    if isinstance(exc, _PERMANENT_IRODS):
        return False
    if isinstance(exc, iex.FileDriverException) and unix_errno(exc) == errno.ENAMETOOLONG:
        return False  # a vault path or name longer than the file system allows: the same next time
    if isinstance(exc, iex.SystemException | iex.FileDriverException | iex.USER_CHKSUM_MISMATCH):
        return True  # SYS_* (connections, agents), storage I/O errors, a copy that did not verify
    if isinstance(exc, iex.iRODSException):
        return False
    if isinstance(exc, OSError):  # socket errors and the like (local file errors are turned permanent)
        return True
    # PRC raises KeyError for error codes it does not know and RuntimeError when a parallel put fails.
    return isinstance(exc, KeyError | RuntimeError)


def unix_errno(exc: BaseException) -> int:
    """The errno a storage error (UNIX_FILE_*) carries in its code's last three digits (-528036: 36), or 0."""
    code = getattr(exc, "code", None)
    return (-code) % 1000 if isinstance(exc, iex.FileDriverException) and isinstance(code, int) and code < 0 else 0


def describe(exc: BaseException) -> str:
    if isinstance(exc, iex.iRODSException):
        code = getattr(exc, "code", None)
        msg = str(exc).strip()
        if msg in ("", "None") and unix_errno(exc):
            msg = os.strerror(unix_errno(exc))  # e.g. UNIX_FILE_RENAME_ERR (-528036): File name too long
        elif msg in ("", "None") and isinstance(exc, iex.USER_STRLEN_TOOLONG):
            msg = ("a path longer than iRODS takes (MAX_NAME_LEN, 1088 bytes with its NUL) for the logical path, "
                   "the temporary or set-aside name irods-ingestd gives it, or its physical path in the "
                   "resource's vault (the vault's own prefix counts)")
        elif msg in ("", "None") and isinstance(exc, iex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME):
            msg = ("an object of that name was made meanwhile (another worker, or another landing name that maps "
                   "to the same iRODS name; `irods-ingestd retry` looks at it again)")
        return f"{type(exc).__name__}" + (f" ({code})" if code else "") + (f": {msg}" if msg else "")
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff_delay(q: QueueConfig, attempt: int) -> float:
    return float(min(q.backoff * (2 ** attempt), q.backoff_max))
