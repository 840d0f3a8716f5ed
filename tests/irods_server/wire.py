"""Wire helpers of the iRODS test server: XML/JSON packing, request unpacking, checksums, the reply type."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Protocol
from xml.sax.saxutils import escape as _sax_escape

from irods.api_number import api_number

from .errors import E, IrodsError

API_NAMES: dict[int, str] = {}
for _name, _num in api_number.items():
    API_NAMES.setdefault(_num, _name.removesuffix("_APN").removesuffix("_AN"))

O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC = 3, 64, 128, 512
RENAME_DATA_OBJ, RENAME_COLL, UNREG_OPR = 11, 12, 26


class Conn(Protocol):
    """What request handlers need of a client connection."""

    cid: int
    user: str | None
    statements: dict[int, tuple[list[int], list[list[str]], int]]  # open GenQueries: columns, rows, next row


@dataclass
class Reply:
    status: int = 0
    body: str = ""
    bs: bytes | memoryview = b""
    err: str = ""  # the error part's message; none is sent without one (as a real server mostly does)
    err_status: int | None = None  # the error part's status, when it is not the reply's


def api_num(api: int | str) -> int:
    if isinstance(api, int) or (isinstance(api, str) and api.lstrip("-").isdigit()):
        return int(api)
    name = api.upper()
    for cand in (name, name + "_AN", name + "_APN"):
        if cand in api_number:
            return api_number[cand]
    raise ValueError(f"unknown API {api!r}")


def xesc(value: Any) -> str:
    return _sax_escape(str(value), {'"': "&quot;", "'": "&apos;"})


def pack_xml(tag: str, **fields: Any) -> str:
    return f"<{tag}>" + "".join(f"<{k}>{xesc(v)}</{k}>" for k, v in fields.items()) + f"</{tag}>"


def json_reply(obj: Any) -> str:
    raw = json.dumps(obj).encode()
    return f"<BinBytesBuf_PI><buflen>{len(raw)}</buflen><buf>{base64.b64encode(raw).decode()}</buf></BinBytesBuf_PI>"


def sha2_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha2:" + base64.b64encode(h.digest()).decode()


def native_digest(challenge: bytes, password: str) -> bytes:
    padded = struct.pack("50s", password.encode("utf-8").strip())
    return hashlib.md5(challenge + padded).digest().replace(b"\x00", b"\x01")


def kvp(msg: Any) -> dict[str, str]:
    sub = getattr(msg, "KeyValPair_PI", None)
    if sub is None:
        return {}
    keys = sub._values.get("keyWord") or []
    vals = sub._values.get("svalue") or []
    return {k: (v or "") for k, v in zip(keys, vals, strict=False) if k is not None}


def unpack(cls: Any, body: bytes | None) -> Any:
    if not body:
        raise IrodsError(E.SYS_API_INPUT_ERR, f"{cls.__name__}: empty request body")
    try:
        root = ET.fromstring(body.replace(b"\0", b""))
        msg = cls.__new__(cls)
        msg._values = {}
        msg.unpack(root)
    except Exception as exc:  # noqa: BLE001 - a bad body is the client's problem
        raise IrodsError(E.SYS_API_INPUT_ERR, f"cannot parse request: {exc}") from exc
    return msg


def unpack_json(body: bytes | None) -> dict:
    if not body:
        raise IrodsError(E.SYS_API_INPUT_ERR, "empty JSON request")
    root = ET.fromstring(body.replace(b"\0", b""))
    if root.tag == "STR_PI":
        text = root.findtext("myStr") or ""
    else:
        text = root.findtext("buf") or ""
        if root.tag == "BinBytesBuf_PI":
            text = base64.b64decode(text).replace(b"\0", b"").decode()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad JSON: {exc}") from exc


def error_xml(status: int, msg: str) -> str:
    return (f"<RError_PI><count>1</count><RErrMsg_PI><status>{status}</status>"
            f"<msg>{xesc(msg or 'error')}</msg></RErrMsg_PI></RError_PI>")  # fmt: skip
