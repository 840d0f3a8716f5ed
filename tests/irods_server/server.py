"""The iRODS test server: sockets, framing, authentication, API handlers, faults and the control channel.

See the package docstring (``tests/irods_server/__init__.py``) for what this is and is not.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import logging
import os
import posixpath
import secrets
import socket
import stat
import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape as _sax_escape

from irods.api_number import api_number
from irods.message import (
    AuthResponse,
    FileOpenRequest,
    GenQueryRequest,
    MetadataRequest,
    ModAclRequest,
    OpenedDataObjRequest,
    StartupPack,
)
from irods.message import ClientServerNegotiation as CsNeg
from irods.message import CollectionRequest as CollInpNew

from .catalog import ACCESS_ALIASES, ACCESS_CODES, Catalog, now_ts
from .errors import E, IrodsError

log = logging.getLogger("irods_test_server")

API_NAMES: dict[int, str] = {}
for _name, _num in api_number.items():
    API_NAMES.setdefault(_num, _name.removesuffix("_APN").removesuffix("_AN"))

O_ACCMODE, O_CREAT, O_EXCL, O_TRUNC = 3, 64, 128, 512
RENAME_DATA_OBJ, RENAME_COLL, UNREG_OPR = 11, 12, 26


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


@dataclass
class Reply:
    status: int = 0
    body: str = ""
    bs: bytes | memoryview = b""
    err: str = ""


@dataclass
class Desc:
    fd: int
    data_id: int
    path: str
    obj_path: str
    osfd: int
    writable: bool
    primary: bool
    keywords: dict
    token: str
    conn_id: int
    offset: int = 0


@dataclass
class Fault:
    api: int
    count: int
    error: int
    after_bytes: int | None = None
    armed_at_bytes: int = 0


@dataclass
class Faults:
    refuse: bool = False
    delay: float = 0.0
    fail: list[Fault] = field(default_factory=list)


class ClientConn:
    def __init__(self, server: IrodsTestServer, sock: socket.socket, cid: int):
        self.server = server
        self.sock = sock
        self.cid = cid
        self.user: str | None = None
        self.user_type = ""
        self.proxy_user = ""
        self.challenge: bytes | None = None

    # --- framing -----------------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytearray:
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if k == 0:
                raise ConnectionError("peer closed")
            got += k
        return buf

    def recv_msg(self) -> tuple[str, int, bytes, bytes, bytearray]:
        (hlen,) = struct.unpack(">i", self._recv_exact(4))
        header = ET.fromstring(bytes(self._recv_exact(hlen)))
        mtype = header.findtext("type") or ""
        msg_len = int(header.findtext("msgLen") or 0)
        err_len = int(header.findtext("errorLen") or 0)
        bs_len = int(header.findtext("bsLen") or 0)
        int_info = int(header.findtext("intInfo") or 0)
        body = bytes(self._recv_exact(msg_len)) if msg_len else b""
        err = bytes(self._recv_exact(err_len)) if err_len else b""
        bs = self._recv_exact(bs_len) if bs_len else bytearray()
        return mtype, int_info, body, err, bs

    def send_msg(self, mtype: str, int_info: int, body: str = "", err: str = "", bs: bytes | memoryview = b"") -> None:
        delay = self.server.faults.delay
        if delay:
            time.sleep(delay)
        b = body.encode()
        e = err.encode()
        header = (
            f"<MsgHeader_PI><type>{mtype}</type><msgLen>{len(b)}</msgLen><errorLen>{len(e)}</errorLen>"
            f"<bsLen>{len(bs)}</bsLen><intInfo>{int_info}</intInfo></MsgHeader_PI>"
        ).encode()
        data = struct.pack(">i", len(header)) + header + b + e
        if len(bs) and len(bs) < 65536:
            self.sock.sendall(data + bytes(bs))
        else:
            self.sock.sendall(data)
            if len(bs):
                self.sock.sendall(bs)

    # --- connection life ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            if not self.startup():
                return
            while True:
                mtype, int_info, body, _err, bs = self.recv_msg()
                if mtype == "RODS_DISCONNECT":
                    return
                if mtype != "RODS_API_REQ":
                    log.warning("conn %d: unexpected message type %r", self.cid, mtype)
                    return
                reply = self.server.dispatch(self, int_info, body, bs)
                errxml = ""
                if reply.status < 0:
                    errxml = (
                        f"<RError_PI><count>1</count><RErrMsg_PI><status>{reply.status}</status>"
                        f"<msg>{xesc(reply.err or 'error')}</msg></RErrMsg_PI></RError_PI>"
                    )
                self.send_msg("RODS_API_REPLY", reply.status, reply.body, errxml, reply.bs)
        except (ConnectionError, OSError, struct.error, ET.ParseError) as exc:
            log.debug("conn %d closed: %r", self.cid, exc)
        finally:
            self.server.connection_closed(self)

    def startup(self) -> bool:
        mtype, _info, body, _e, _bs = self.recv_msg()
        if mtype != "RODS_CONNECT":
            return False
        sp = unpack(StartupPack, body)
        self.proxy_user = sp._values.get("proxyUser") or ""
        option = sp._values.get("option") or ""
        if option.endswith("request_server_negotiation"):
            policy = self.server.cs_neg_policy
            self.send_msg("RODS_CS_NEG_T", 0, pack_xml("CS_NEG_PI", status=1, result=policy))
            _t, _i, nbody, _e, _bs = self.recv_msg()
            neg = unpack(CsNeg, nbody)
            result = neg._values.get("result") or ""
            if "CS_NEG_USE_TCP" not in result:
                log.info("conn %d: negotiation result %r, closing", self.cid, result)
                return False
        self.send_msg(
            "RODS_VERSION",
            0,
            pack_xml("Version_PI", status=0, relVersion=f"rods{self.server.version}", apiVersion="d",
                     reconnPort=0, reconnAddr="", cookie=400),
        )  # fmt: skip
        return True


class IrodsTestServer:
    def __init__(self, host: str, port: int, vault: str, catalog: str, zone: str = "tempZone",
                 users: list[tuple[str, str, str]] | None = None, version: str = "4.3.2",
                 resource: str = "demoResc", cs_neg_policy: str = "CS_NEG_DONT_CARE",
                 control_port: int | None = None, control_socket: str | None = None) -> None:  # fmt: skip
        self.host, self.port = host, port
        self.vault = os.path.abspath(vault)
        os.makedirs(self.vault, exist_ok=True)
        self.zone = zone
        self.version = version
        self.resource = resource
        self.cs_neg_policy = cs_neg_policy
        self.users = users or [("rods", "rods", "rodsadmin")]
        self.catalog = Catalog(catalog, zone, resource, self.vault)
        self.catalog.bootstrap(self.users)
        self.faults = Faults()
        self.counters: Counter[str] = Counter()
        self.lock = threading.RLock()
        self.fds: dict[int, Desc] = {}
        self.tokens: dict[str, int] = {}  # replica token -> primary fd
        self.next_fd = 3
        self.conns: dict[int, ClientConn] = {}
        self.next_cid = 1
        self.stopping = threading.Event()
        self.control_port = control_port
        self.control_socket = control_socket
        self.parent_pid: int | None = None  # stop when this process is no longer our parent
        self.listener: socket.socket | None = None
        self.control_listener: socket.socket | None = None
        self.handlers: dict[int, Callable[[ClientConn, bytes, bytearray], Reply]] = {
            703: self.h_auth_request, 704: self.h_auth_response, 110000: self.h_authentication,
            681: self.h_coll_create, 679: self.h_rm_coll, 627: self.h_rename,
            601: self.h_create, 602: self.h_open, 676: self.h_write, 675: self.h_read,
            674: self.h_lseek, 673: self.h_close, 20000: self.h_fd_info, 20004: self.h_replica_close,
            615: self.h_unlink, 630: self.h_phy_path_reg, 629: self.h_chksum, 706: self.h_mod_avu,
            20002: self.h_atomic_metadata, 707: self.h_mod_acl, 702: self.h_gen_query,
        }  # fmt: skip
        self.no_auth_apis = {703, 704, 110000}

    # --- sockets -----------------------------------------------------------------------------
    def bind(self) -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.host, self.port))
        s.listen(128)
        s.settimeout(0.2)
        self.listener = s
        self.port = s.getsockname()[1]
        if self.control_socket:
            if os.path.exists(self.control_socket):
                os.unlink(self.control_socket)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.bind(self.control_socket)
        else:
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            c.bind((self.host, self.control_port or 0))
            self.control_port = c.getsockname()[1]
        c.listen(16)
        c.settimeout(0.2)
        self.control_listener = c

    def serve_forever(self) -> None:
        assert self.listener is not None
        threading.Thread(target=self._control_loop, name="control", daemon=True).start()
        while not self.stopping.is_set():
            try:
                sock, _addr = self.listener.accept()
            except TimeoutError:
                if self.parent_pid is not None and os.getppid() != self.parent_pid:
                    log.warning("parent process %d went away, stopping", self.parent_pid)
                    break
                continue
            except OSError:
                if self.stopping.is_set():
                    break
                raise
            self.counters["connections_accepted"] += 1
            if self.faults.refuse:
                self.counters["connections_refused"] += 1
                sock.close()
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                cid = self.next_cid
                self.next_cid += 1
                conn = ClientConn(self, sock, cid)
                self.conns[cid] = conn
            threading.Thread(target=conn.run, name=f"conn-{cid}", daemon=True).start()
        self.shutdown()

    def shutdown(self) -> None:
        self.stopping.set()
        for s in (self.listener, self.control_listener):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass
        self.drop_connections()
        deadline = time.time() + 2
        while self.conns and time.time() < deadline:
            time.sleep(0.01)
        with self.lock:
            for desc in list(self.fds.values()):
                self._release_desc(desc, finalize=False)
        self.catalog.close()
        if self.control_socket and os.path.exists(self.control_socket):
            os.unlink(self.control_socket)

    def drop_connections(self) -> int:
        with self.lock:
            conns = list(self.conns.values())
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)

    def connection_closed(self, conn: ClientConn) -> None:
        with self.lock:
            self.conns.pop(conn.cid, None)
            for desc in [d for d in self.fds.values() if d.conn_id == conn.cid]:
                self._release_desc(desc, finalize=False)
        try:
            conn.sock.close()
        except OSError:
            pass

    # --- control channel ---------------------------------------------------------------------
    def _control_loop(self) -> None:
        assert self.control_listener is not None
        while not self.stopping.is_set():
            try:
                sock, _ = self.control_listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._control_client, args=(sock,), daemon=True).start()

    def _control_client(self, sock: socket.socket) -> None:
        sock.settimeout(None)
        with sock, sock.makefile("rwb") as f:
            for line in f:
                try:
                    resp = self.control(json.loads(line))
                except Exception as exc:  # noqa: BLE001 - report any error to the caller
                    resp = {"ok": False, "error": repr(exc)}
                f.write(json.dumps(resp).encode() + b"\n")
                f.flush()
                if resp.get("stopping"):
                    return

    def control(self, req: dict) -> dict:
        cmd = req.get("cmd")
        if cmd == "ping":
            return {"ok": True, "port": self.port}
        if cmd == "refuse":
            self.faults.refuse = bool(req.get("on", True))
        elif cmd == "drop":
            return {"ok": True, "dropped": self.drop_connections()}
        elif cmd == "delay":
            self.faults.delay = float(req.get("seconds", 0))
        elif cmd == "fail":
            after = req.get("after_bytes")
            with self.lock:
                self.faults.fail.append(
                    Fault(api_num(req["api"]), int(req.get("count", 1)), int(req.get("error", -1)),
                          None if after is None else int(after), self.counters["DATA_OBJ_WRITE_BYTES"])
                )  # fmt: skip
        elif cmd == "reset_faults":
            with self.lock:
                self.faults.refuse = False
                self.faults.delay = 0.0
                self.faults.fail.clear()
        elif cmd == "counters":
            with self.lock:
                return {"ok": True, "counters": dict(self.counters)}
        elif cmd == "reset_counters":
            with self.lock:
                self.counters.clear()
        elif cmd == "stop":
            threading.Thread(target=self.stopping.set, daemon=True).start()
            return {"ok": True, "stopping": True}
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        return {"ok": True}

    # --- dispatch ----------------------------------------------------------------------------
    def dispatch(self, conn: ClientConn, api: int, body: bytes, bs: bytearray) -> Reply:
        name = API_NAMES.get(api, str(api))
        with self.lock:
            self.counters[name] += 1
            for fault in self.faults.fail:
                if fault.api != api or fault.count <= 0:
                    continue
                if fault.after_bytes is not None and (
                    self.counters["DATA_OBJ_WRITE_BYTES"] - fault.armed_at_bytes < fault.after_bytes
                ):
                    continue
                fault.count -= 1
                self.counters["faults_injected"] += 1
                return Reply(fault.error, err=f"injected fault for {name}")
        handler = self.handlers.get(api)
        if handler is None:
            return Reply(E.SYS_UNMATCHED_API_NUM, err=f"API {api} is not implemented by the test server")
        if api not in self.no_auth_apis and conn.user is None:
            return Reply(E.SYS_NO_API_PRIV, err="not authenticated")
        try:
            return handler(conn, body, bs)
        except IrodsError as exc:
            return Reply(exc.code, err=exc.msg)
        except Exception as exc:
            log.exception("handler for %s failed", name)
            return Reply(E.SYS_INVALID_INPUT_PARAM, err=f"test server error: {exc!r}")

    # --- authentication ----------------------------------------------------------------------
    def _check_password(self, conn: ClientConn, user: str, digest: bytes) -> Reply | None:
        row = self.catalog.user(user)
        if row is None or conn.challenge is None or row[2] == "rodsgroup":
            self.counters["auth_failed"] += 1
            return Reply(E.CAT_INVALID_AUTHENTICATION, err="authentication failed")
        if not secrets.compare_digest(native_digest(conn.challenge, row[3] or ""), digest[:16]):
            self.counters["auth_failed"] += 1
            return Reply(E.CAT_INVALID_AUTHENTICATION, err="authentication failed")
        conn.user, conn.user_type = row[1], row[2]
        self.counters["auth_ok"] += 1
        return None

    def h_auth_request(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        conn.challenge = secrets.token_hex(32).encode()
        return Reply(0, pack_xml("authRequestOut_PI", challenge=base64.b64encode(conn.challenge).decode()))

    def h_auth_response(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(AuthResponse, body)
        user = msg._values.get("username") or conn.proxy_user
        return self._check_password(conn, user, msg._values.get("response") or b"") or Reply(0)

    def h_authentication(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        req = unpack_json(body)
        op = req.get("next_operation")
        if req.get("scheme", "native") != "native":
            return Reply(E.SYS_NOT_SUPPORTED, err="only the native scheme is supported")
        if op == "auth_agent_auth_request":
            challenge = secrets.token_hex(32)
            conn.challenge = challenge.encode()
            return Reply(0, json_reply({**req, "request_result": challenge}))
        if op == "auth_agent_auth_response":
            try:
                digest = base64.b64decode(req.get("digest") or "")
            except ValueError:
                digest = b""
            failed = self._check_password(conn, req.get("user_name") or conn.proxy_user, digest)
            return failed or Reply(0, json_reply(req))
        return Reply(E.SYS_INVALID_INPUT_PARAM, err=f"unknown next_operation {op!r}")

    # --- helpers -----------------------------------------------------------------------------
    def norm(self, path: str | None) -> str:
        if not path or not path.startswith("/"):
            raise IrodsError(E.USER_INPUT_PATH_ERR, f"bad logical path {path!r}")
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise IrodsError(E.USER_INPUT_PATH_ERR, f"bad logical path {path!r}")
        return "/" + "/".join(parts)

    def vault_path(self, logical: str) -> str:
        rel = logical.split("/", 2)[2] if logical.count("/") >= 2 else ""
        return os.path.join(self.vault, rel)

    def in_vault(self, phys: str) -> bool:
        return phys == self.vault or phys.startswith(self.vault + os.sep)

    def _release_desc(self, desc: Desc, finalize: bool, kw: dict | None = None) -> None:
        """Close a descriptor. Called with self.lock held."""
        self.fds.pop(desc.fd, None)
        try:
            os.close(desc.osfd)
        except OSError:
            pass
        if not (desc.writable and desc.primary):
            return
        self.tokens.pop(desc.token, None)
        if finalize:
            return
        # the writer went away without a close: the replica is stale, as on a real server
        try:
            self.catalog.update_data(desc.data_id, repl_status=0, modify_ts=now_ts())
        except Exception:  # noqa: BLE001 - catalog may be closing
            pass

    def _finalize(self, desc: Desc, kw: dict, update_size: bool = True, update_status: bool = True,
                  compute_checksum: bool | None = None) -> None:  # fmt: skip
        allkw = {**desc.keywords, **kw}
        fields: dict[str, Any] = {"modify_ts": now_ts()}
        if update_size:
            fields["data_size"] = os.stat(desc.path).st_size
        if update_status:
            fields["repl_status"] = 1
        want = compute_checksum if compute_checksum is not None else (
            "regChksum" in allkw or "verifyChksum" in allkw
        )  # fmt: skip
        if want:
            checksum = sha2_file(desc.path)
            expected = allkw.get("chksum") or allkw.get("orig_chksum")
            if "verifyChksum" in allkw and expected and expected != checksum:
                self.catalog.update_data(desc.data_id, repl_status=0, checksum=checksum)
                raise IrodsError(E.USER_CHKSUM_MISMATCH, f"checksum mismatch {expected} != {checksum}")
            fields["checksum"] = checksum
        self.catalog.update_data(desc.data_id, **fields)

    def _desc(self, fd: int | None) -> Desc:
        desc = self.fds.get(fd or -1)
        if desc is None:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad file descriptor {fd}")
        return desc

    # --- collections -------------------------------------------------------------------------
    def h_coll_create(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(CollInpNew, body)
        path = self.norm(msg._values.get("collName"))
        recursive = "recursiveOpr" in kvp(msg)
        with self.catalog.tx():
            if self.catalog.data(path) is not None:
                raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, path)
            if self.catalog.coll(path):
                if recursive:
                    return Reply(0)
                raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, path)
            parent = posixpath.dirname(path)
            if not self.catalog.coll(parent):
                if not recursive:
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, parent)
                missing = []
                p = parent
                while p != "/" and not self.catalog.coll(p):
                    if self.catalog.data(p) is not None:
                        raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, p)
                    missing.append(p)
                    p = posixpath.dirname(p)
                for p in reversed(missing):
                    self.catalog.insert_coll(p, conn.user or "")
            self.catalog.insert_coll(path, conn.user or "")
        return Reply(0)

    def h_rm_coll(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(CollInpNew, body)
        path = self.norm(msg._values.get("collName"))
        recursive = "recursiveOpr" in kvp(msg)
        with self.catalog.tx() as db:
            if not self.catalog.coll(path):
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, path)
            colls = self.catalog.subtree_colls(path)
            ids = [c[0] for c in colls]
            marks = ",".join("?" * len(ids))
            data = db.execute(f"SELECT data_id, data_path FROM data WHERE coll_id IN ({marks})", ids).fetchall()
            if not recursive and (len(colls) > 1 or data):
                raise IrodsError(E.CAT_COLLECTION_NOT_EMPTY, path)
            for data_id, phys in data:
                self.catalog.delete_data(data_id)
                self._remove_phys(phys)
            db.execute(f"DELETE FROM colls WHERE coll_id IN ({marks})", ids)
            db.execute(f"DELETE FROM avu WHERE obj_type='C' AND obj_id IN ({marks})", ids)
            db.execute(f"DELETE FROM access WHERE obj_id IN ({marks})", ids)
        return Reply(0)

    def _remove_phys(self, phys: str) -> None:
        if phys and self.in_vault(phys):
            try:
                os.unlink(phys)
            except OSError:
                pass

    def h_rename(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        # PRC packs both halves as <DataObjInp_PI> elements (its property names do not appear on the wire)
        try:
            parts = ET.fromstring(body.replace(b"\0", b"")).findall("DataObjInp_PI")
        except ET.ParseError as exc:
            raise IrodsError(E.SYS_API_INPUT_ERR, f"cannot parse request: {exc}") from exc
        if len(parts) != 2:
            raise IrodsError(E.SYS_API_INPUT_ERR, "DataObjCopyInp_PI needs two DataObjInp_PI")
        src_inp, dst_inp = FileOpenRequest(), FileOpenRequest()
        src_inp.unpack(parts[0])
        dst_inp.unpack(parts[1])
        src = self.norm(src_inp._values.get("objPath"))
        dst = self.norm(dst_inp._values.get("objPath"))
        opr = src_inp._values.get("oprType") or 0
        if src == dst:
            raise IrodsError(E.SAME_SRC_DEST_PATHS_ERR, src)
        with self.catalog.tx() as db:
            if self.catalog.coll(dst):
                raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, dst)
            if self.catalog.data(dst) is not None:
                raise IrodsError(E.CAT_NAME_EXISTS_AS_DATAOBJ, dst)
            dst_parent = self.catalog.coll(posixpath.dirname(dst))
            if not dst_parent:
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(dst))
            row = self.catalog.data(src)
            if row is not None and opr != RENAME_COLL:
                new_phys = row["data_path"]
                if self.in_vault(row["data_path"]):
                    new_phys = self.vault_path(dst)
                    os.makedirs(os.path.dirname(new_phys), exist_ok=True)
                    if os.path.exists(row["data_path"]):
                        os.replace(row["data_path"], new_phys)
                self.catalog.update_data(row["data_id"], coll_id=dst_parent[0], data_name=posixpath.basename(dst),
                                         data_path=new_phys, modify_ts=now_ts())  # fmt: skip
                return Reply(0)
            if not self.catalog.coll(src):
                if opr == RENAME_COLL:
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, src)
                raise IrodsError(E.CAT_UNKNOWN_FILE, src)
            if opr == RENAME_DATA_OBJ:
                raise IrodsError(E.CAT_UNKNOWN_FILE, src)
            if dst.startswith(src + "/"):
                raise IrodsError(E.SAME_SRC_DEST_PATHS_ERR, "cannot move a collection into itself")
            for coll_id, name in self.catalog.subtree_colls(src):
                new = dst + name[len(src) :]
                db.execute("UPDATE colls SET coll_name=?, parent_name=?, modify_ts=? WHERE coll_id=?",
                           (new, posixpath.dirname(new), now_ts(), coll_id))  # fmt: skip
            old_vdir, new_vdir = self.vault_path(src), self.vault_path(dst)
            if os.path.isdir(old_vdir):
                os.makedirs(os.path.dirname(new_vdir), exist_ok=True)
                os.replace(old_vdir, new_vdir)
                prefix = old_vdir + os.sep
                db.execute(
                    "UPDATE data SET data_path = ? || substr(data_path, ?) WHERE substr(data_path, 1, ?) = ?",
                    (new_vdir + os.sep, len(prefix) + 1, len(prefix), prefix),
                )
        return Reply(0)

    # --- data objects: open/read/write/close -------------------------------------------------
    def h_create(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        return self._open(conn, unpack(FileOpenRequest, body), create_api=True)

    def h_open(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        return self._open(conn, unpack(FileOpenRequest, body), create_api=False)

    def _open(self, conn: ClientConn, msg: Any, create_api: bool) -> Reply:
        path = self.norm(msg._values.get("objPath"))
        flags = msg._values.get("openFlags") or 0
        kw = kvp(msg)
        acc = flags & O_ACCMODE
        writable = create_api or acc in (1, 2)
        creating = create_api or bool(flags & O_CREAT)
        if creating and not create_api:
            self.counters["DATA_OBJ_OPEN_CREATE"] += 1
        token = kw.get("replicaToken")
        with self.lock:
            if token:
                primary_fd = self.tokens.get(token)
                primary = self.fds.get(primary_fd or -1)
                if primary is None:
                    raise IrodsError(E.SYS_REPLICA_DOES_NOT_EXIST, "unknown replica token")
                osfd = os.open(primary.path, os.O_RDWR if writable else os.O_RDONLY)
                return Reply(self._new_desc(primary.data_id, primary.path, path, osfd, writable, False, kw, token,
                                            conn.cid))  # fmt: skip
            if writable:
                self._check_resource(kw)
            with self.catalog.tx():
                row = self.catalog.data(path)
                if row is None:
                    if not creating:
                        raise IrodsError(E.OBJ_PATH_DOES_NOT_EXIST, path)
                    if self.catalog.coll(path):
                        raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, path)
                    parent = self.catalog.coll(posixpath.dirname(path))
                    if not parent:
                        raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(path))
                    phys = self.vault_path(path)
                    os.makedirs(os.path.dirname(phys), exist_ok=True)
                    osfd = self._os_open(phys, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
                    data_id = self.catalog.insert_data(path, parent[0], conn.user or "", phys, 0, 2,
                                                       data_type=kw.get("dataType", "generic"))  # fmt: skip
                else:
                    if creating and flags & O_EXCL:
                        raise IrodsError(E.OVERWRITE_WITHOUT_FORCE_FLAG, path)
                    phys, data_id = row["data_path"], row["data_id"]
                    truncate = writable and (create_api or bool(flags & O_TRUNC))
                    mode = (os.O_RDWR | (os.O_TRUNC | os.O_CREAT if truncate else 0)) if writable else os.O_RDONLY
                    osfd = self._os_open(phys, mode)
                    if writable:
                        fields: dict[str, Any] = {"repl_status": 2, "modify_ts": now_ts()}
                        if truncate:
                            fields.update(data_size=0, checksum="")
                        self.catalog.update_data(data_id, **fields)
            new_token = uuid.uuid4().hex
            fd = self._new_desc(data_id, phys, path, osfd, writable, True, kw, new_token, conn.cid)
            self.tokens[new_token] = fd
            return Reply(fd)

    def _os_open(self, phys: str, mode: int) -> int:
        try:
            return os.open(phys, mode, 0o600)
        except OSError as exc:
            raise IrodsError(E.UNIX_FILE_OPEN_ERR - (exc.errno or 0), f"{phys}: {exc.strerror}") from exc

    def _new_desc(self, data_id: int, phys: str, path: str, osfd: int, writable: bool, primary: bool,
                  kw: dict, token: str, cid: int) -> int:  # fmt: skip
        fd = self.next_fd
        self.next_fd += 1
        self.fds[fd] = Desc(fd, data_id, phys, path, osfd, writable, primary, kw, token, cid)
        return fd

    def h_write(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(OpenedDataObjRequest, body)
        with self.lock:
            desc = self._desc(msg._values.get("l1descInx"))
        if not desc.writable:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, "descriptor not open for writing")
        n = os.pwrite(desc.osfd, bs, desc.offset)
        desc.offset += n
        with self.lock:
            self.counters["DATA_OBJ_WRITE_BYTES"] += n
        return Reply(n)

    def h_read(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(OpenedDataObjRequest, body)
        with self.lock:
            desc = self._desc(msg._values.get("l1descInx"))
        data = os.pread(desc.osfd, max(0, msg._values.get("len") or 0), desc.offset)
        desc.offset += len(data)
        with self.lock:
            self.counters["DATA_OBJ_READ_BYTES"] += len(data)
        return Reply(len(data), bs=data)

    def h_lseek(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(OpenedDataObjRequest, body)
        with self.lock:
            desc = self._desc(msg._values.get("l1descInx"))
        offset, whence = msg._values.get("offset") or 0, msg._values.get("whence") or 0
        if whence == 0:
            new = offset
        elif whence == 1:
            new = desc.offset + offset
        elif whence == 2:
            new = os.fstat(desc.osfd).st_size + offset
        else:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad whence {whence}")
        if new < 0:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, "negative offset")
        desc.offset = new
        return Reply(0, pack_xml("fileLseekOut_PI", offset=new))

    def h_close(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(OpenedDataObjRequest, body)
        with self.lock:
            desc = self._desc(msg._values.get("l1descInx"))
            self._release_desc(desc, finalize=True)
        if desc.writable and desc.primary:
            self._finalize(desc, kvp(msg))
        return Reply(0)

    def h_fd_info(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        req = unpack_json(body)
        with self.lock:
            desc = self._desc(req.get("fd"))
        row = self.catalog.data_by_id(desc.data_id)
        info = {
            "l1_descriptor_index": desc.fd,
            "replica_token": desc.token,
            "data_object_input": {"obj_path": desc.obj_path},
            "data_object_info": {
                "object_path": desc.obj_path, "resource_hierarchy": self.resource,
                "resource_name": self.resource, "replica_number": 0, "data_id": desc.data_id,
                "file_path": desc.path, "replica_status": row["repl_status"] if row else 2,
            },
        }  # fmt: skip
        return Reply(0, json_reply(info))

    def h_replica_close(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        req = unpack_json(body)
        with self.lock:
            desc = self._desc(req.get("fd"))
            self._release_desc(desc, finalize=True)
        if desc.writable and desc.primary:
            self._finalize(desc, {}, bool(req.get("update_size", True)), bool(req.get("update_status", True)),
                           bool(req.get("compute_checksum", False)))  # fmt: skip
        return Reply(0)

    def h_unlink(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        row = self.catalog.data(path)
        if row is None:
            raise IrodsError(E.OBJ_PATH_DOES_NOT_EXIST, path)
        unregister = (msg._values.get("oprType") or 0) == UNREG_OPR or kvp(msg).get("oprType") == str(UNREG_OPR)
        self.catalog.delete_data(row["data_id"])
        if not unregister:
            self._remove_phys(row["data_path"])
        return Reply(0)

    def _check_resource(self, kw: dict) -> None:
        for key in ("destRescName", "rescName", "defRescName"):
            name = kw.get(key)
            if name and name.split(";")[0] != self.resource:
                raise IrodsError(E.SYS_RESC_DOES_NOT_EXIST, f"resource {name!r} does not exist")

    # --- register / checksum -----------------------------------------------------------------
    def _check_readable(self, phys: str) -> os.stat_result:
        try:
            st = os.stat(phys)
        except OSError as exc:
            raise IrodsError(E.UNIX_FILE_STAT_ERR - (exc.errno or 0), f"{phys}: {exc.strerror}") from exc
        # A real server runs as an unprivileged service account. When this one runs as root, emulate that:
        # a file with no read permission bit at all is unreadable.
        unreadable = not os.access(phys, os.R_OK) or (os.geteuid() == 0 and not st.st_mode & 0o444)
        if unreadable:
            raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.EACCES, f"{phys}: Permission denied")
        return st

    def h_phy_path_reg(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        kw = kvp(msg)
        phys = kw.get("filePath")
        if not phys or not phys.startswith("/"):
            raise IrodsError(E.SYS_INVALID_FILE_PATH, f"bad filePath {phys!r}")
        phys = os.path.normpath(phys)
        self._check_resource(kw)
        if "collection" in kw:
            return self._register_tree(conn, path, phys, kw)
        self._register_file(conn, path, phys, kw)
        return Reply(0)

    def _register_file(self, conn: ClientConn, path: str, phys: str, kw: dict) -> None:
        st = self._check_readable(phys)
        if not stat.S_ISREG(st.st_mode):
            raise IrodsError(E.SYS_INVALID_FILE_PATH, f"{phys} is not a regular file")
        checksum = ""
        if "regChksum" in kw or "verifyChksum" in kw:
            checksum = sha2_file(phys)
            expected = kw.get("chksum")
            if "verifyChksum" in kw and expected and expected != checksum:
                raise IrodsError(E.USER_CHKSUM_MISMATCH, f"checksum mismatch {expected} != {checksum}")
        with self.catalog.tx():
            if self.catalog.coll(path):
                raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, path)
            parent = self.catalog.coll(posixpath.dirname(path))
            if not parent:
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(path))
            row = self.catalog.data(path)
            if row is not None:
                if "forceFlag" not in kw:
                    raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, path)
                self.catalog.update_data(row["data_id"], data_path=phys, data_size=st.st_size, repl_status=1,
                                         checksum=checksum, modify_ts=now_ts())  # fmt: skip
                return
            self.catalog.insert_data(path, parent[0], conn.user or "", phys, st.st_size, 1, checksum,
                                     kw.get("dataType", "generic"))  # fmt: skip

    def _register_tree(self, conn: ClientConn, path: str, phys: str, kw: dict) -> Reply:
        if not os.path.isdir(phys):
            raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.ENOTDIR, f"{phys} is not a directory")
        sub = {k: v for k, v in kw.items() if k not in ("collection", "forceFlag")}
        for dirpath, dirnames, filenames in os.walk(phys):
            rel = os.path.relpath(dirpath, phys)
            lpath = path if rel == "." else f"{path}/{rel}"
            if not self.catalog.coll(lpath):
                parent = posixpath.dirname(lpath)
                if not self.catalog.coll(parent):
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, parent)
                self.catalog.insert_coll(lpath, conn.user or "")
            dirnames.sort()
            for name in sorted(filenames):
                self._register_file(conn, f"{lpath}/{name}", os.path.join(dirpath, name), sub)
        return Reply(0)

    def h_chksum(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        kw = kvp(msg)
        row = self.catalog.data(path)
        if row is None:
            raise IrodsError(E.OBJ_PATH_DOES_NOT_EXIST, path)
        try:
            actual = sha2_file(row["data_path"])
        except OSError as exc:
            raise IrodsError(E.UNIX_FILE_OPEN_ERR - (exc.errno or 0), str(exc)) from exc
        stored = row["checksum"] or ""
        if "verifyChksum" in kw:
            if stored and stored != actual:
                raise IrodsError(E.USER_CHKSUM_MISMATCH, f"stored {stored} != computed {actual}")
            if not stored:
                self.catalog.update_data(row["data_id"], checksum=actual)
            return Reply(0)
        if stored and "forceChksum" not in kw:
            return Reply(0, pack_xml("Str_PI", myStr=stored))
        self.catalog.update_data(row["data_id"], checksum=actual)
        return Reply(0, pack_xml("Str_PI", myStr=actual))

    # --- metadata ----------------------------------------------------------------------------
    def _target(self, kind: str, name: str) -> tuple[int, str]:
        kind = kind.lstrip("-")
        if kind in ("d", "D"):
            row = self.catalog.data(self.norm(name))
            if row is None:
                raise IrodsError(E.CAT_UNKNOWN_FILE, name)
            return row["data_id"], "d"
        if kind in ("C", "c"):
            crow = self.catalog.coll(self.norm(name))
            if not crow:
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, name)
            return crow[0], "C"
        if kind in ("R", "r"):
            rrow = self.catalog.q1("SELECT resc_id FROM resources WHERE resc_name=?", (name,))
            if not rrow:
                raise IrodsError(E.SYS_RESC_DOES_NOT_EXIST, name)
            return rrow[0], "R"
        if kind == "u":
            urow = self.catalog.user(name)
            if not urow:
                raise IrodsError(E.CAT_INVALID_USER, name)
            return urow[0], "u"
        raise IrodsError(E.CAT_INVALID_ARGUMENT, f"bad object type {kind!r}")

    def _avu_add(self, obj: tuple[int, str], name: str, value: str, units: str, replace: bool = False) -> None:
        if not name or value is None or value == "":
            raise IrodsError(E.CAT_INVALID_ARGUMENT, "attribute name and value are required")
        ts = now_ts()
        with self.catalog.tx() as db:
            if replace:
                db.execute("DELETE FROM avu WHERE obj_id=? AND obj_type=? AND name=?", (*obj, name))
            elif db.execute(
                "SELECT 1 FROM avu WHERE obj_id=? AND obj_type=? AND name=? AND value=? AND units=?",
                (*obj, name, value, units),
            ).fetchone():
                raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, f"AVU {name}={value} exists")
            db.execute("INSERT INTO avu VALUES(?,?,?,?,?,?,?,?)",
                       (self.catalog.next_id(), *obj, name, value, units, ts, ts))  # fmt: skip

    def _avu_rm(self, obj: tuple[int, str], name: str, value: str, units: str | None, wildcard: bool) -> int:
        op = "LIKE" if wildcard else "="
        sql = f"DELETE FROM avu WHERE obj_id=? AND obj_type=? AND name {op} ? AND value {op} ?"
        params: list[Any] = [*obj, name, value]
        if units is not None:
            sql += f" AND units {op} ?"
            params.append(units)
        with self.catalog.tx() as db:
            return db.execute(sql, params).rowcount

    def h_mod_avu(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(MetadataRequest, body)
        a = [msg._values.get(f"arg{i}") or "" for i in range(10)]
        op = a[0].lower()
        if op == "cp":
            src = self._target(a[1], a[3])
            dst = self._target(a[2], a[4])
            for name, value, units in self.catalog.q(
                "SELECT name, value, units FROM avu WHERE obj_id=? AND obj_type=?", src
            ):
                try:
                    self._avu_add(dst, name, value, units or "")
                except IrodsError:
                    pass
            return Reply(0)
        obj = self._target(a[1], a[2])
        if op in ("add", "adda"):
            self._avu_add(obj, a[3], a[4], a[5])
        elif op == "set":
            self._avu_add(obj, a[3], a[4], a[5], replace=True)
        elif op in ("rm", "rmw"):
            self._avu_rm(obj, a[3], a[4], a[5] if a[5] or op == "rm" else None, wildcard=op == "rmw")
        elif op == "rmi":
            with self.catalog.tx() as db:
                db.execute("DELETE FROM avu WHERE obj_id=? AND obj_type=? AND meta_id=?", (*obj, a[3]))
        elif op == "mod":
            rest = a[5:]
            units = None
            if rest and rest[0] and not rest[0].startswith(("n:", "v:", "u:")):
                units, rest = rest[0], rest[1:]
            row = self.catalog.q1(
                "SELECT meta_id, name, value, units FROM avu WHERE obj_id=? AND obj_type=? AND name=? AND value=?"
                + (" AND units=?" if units is not None else ""),
                (*obj, a[3], a[4], *([units] if units is not None else [])),
            )
            if not row:
                raise IrodsError(E.CAT_INVALID_ARGUMENT, "no such AVU to modify")
            new = {"n": row[1], "v": row[2], "u": row[3]}
            for item in rest:
                if item and item[:2] in ("n:", "v:", "u:"):
                    new[item[0]] = item[2:]
            with self.catalog.tx() as db:
                db.execute("UPDATE avu SET name=?, value=?, units=?, modify_ts=? WHERE meta_id=?",
                           (new["n"], new["v"], new["u"], now_ts(), row[0]))  # fmt: skip
        else:
            raise IrodsError(E.CAT_INVALID_ARGUMENT, f"unsupported metadata operation {op!r}")
        return Reply(0)

    def h_atomic_metadata(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        req = unpack_json(body)
        kinds = {"data_object": "d", "collection": "C", "resource": "R", "user": "u"}
        kind = kinds.get(req.get("entity_type", ""))
        if kind is None:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad entity_type {req.get('entity_type')!r}")
        obj = self._target(kind, req.get("entity_name", ""))
        with self.catalog.tx():
            for i, op in enumerate(req.get("operations", [])):
                name, value, units = op.get("attribute", ""), op.get("value", ""), op.get("units", "")
                try:
                    if op.get("operation") == "add":
                        try:
                            self._avu_add(obj, name, value, units)
                        except IrodsError as exc:
                            if exc.code != E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME:
                                raise
                    elif op.get("operation") == "remove":
                        self._avu_rm(obj, name, value, units, wildcard=False)
                    else:
                        raise IrodsError(E.SYS_INVALID_INPUT_PARAM, f"bad operation {op.get('operation')!r}")
                except IrodsError as exc:
                    raise IrodsError(exc.code, f"operation {i}: {exc.msg}") from exc
        return Reply(0, json_reply({}))

    # --- ACLs --------------------------------------------------------------------------------
    def h_mod_acl(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(ModAclRequest, body)
        level = (msg._values.get("accessLevel") or "").strip()
        if level.startswith("admin:"):
            level = level[len("admin:") :]
        level = ACCESS_ALIASES.get(level, level).replace(" ", "_")
        path = self.norm(msg._values.get("path"))
        recursive = bool(msg._values.get("recursiveFlag"))
        with self.catalog.tx() as db:
            row = self.catalog.data(path)
            coll = None if row is not None else self.catalog.coll(path)
            if row is None and coll is None:
                raise IrodsError(E.CAT_UNKNOWN_FILE, path)
            if level in ("inherit", "noinherit"):
                if coll is None:
                    raise IrodsError(E.CAT_INVALID_ARGUMENT, "inheritance applies to collections")
                flag = "1" if level == "inherit" else ""
                targets = self.catalog.subtree_colls(path) if recursive else [coll[:2]]
                for cid, _ in targets:
                    db.execute("UPDATE colls SET inheritance=? WHERE coll_id=?", (flag, cid))
                return Reply(0)
            if level not in ACCESS_CODES:
                raise IrodsError(E.CAT_INVALID_ARGUMENT, f"bad access level {level!r}")
            user = self.catalog.user(msg._values.get("userName") or "")
            if user is None:
                raise IrodsError(E.CAT_INVALID_USER, msg._values.get("userName") or "")
            ids = [row["data_id"]] if row is not None else [coll[0] if coll else 0]
            if coll is not None and recursive:
                colls = [c[0] for c in self.catalog.subtree_colls(path)]
                marks = ",".join("?" * len(colls))
                ids = colls + [r[0] for r in db.execute(f"SELECT data_id FROM data WHERE coll_id IN ({marks})", colls)]
            for obj_id in ids:
                self.catalog.set_access(db, obj_id, user[0], level)
        return Reply(0)

    # --- GenQuery ----------------------------------------------------------------------------
    def h_gen_query(self, conn: ClientConn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(GenQueryRequest, body)
        v = msg._values
        max_rows = v.get("maxRows") or 0
        cont = v.get("continueInx") or 0
        if max_rows <= 0:
            raise IrodsError(E.CAT_NO_ROWS_FOUND, "query closed")
        sel = v.get("InxIvalPair_PI")
        cond = v.get("InxValPair_PI")
        selects = list(zip(sel._values.get("inx") or [], sel._values.get("ivalue") or [], strict=False)) if sel else []
        conds = (
            list(zip(cond._values.get("inx") or [], [s or "" for s in cond._values.get("svalue") or []],
                     strict=False)) if cond else []
        )  # fmt: skip
        if not selects:
            raise IrodsError(E.SYS_INVALID_INPUT_PARAM, "no columns selected")
        cols, rows = self.catalog.genquery(selects, conds, v.get("options") or 0)
        start = cont if cont > 0 else (v.get("partialStartIndex") or 0)
        page = rows[start : start + max_rows]
        if not page:
            raise IrodsError(E.CAT_NO_ROWS_FOUND, "no rows found")
        nxt = start + max_rows if start + max_rows < len(rows) else 0
        parts = [
            f"<GenQueryOut_PI><rowCnt>{len(page)}</rowCnt><attriCnt>{len(cols)}</attriCnt>"
            f"<continueInx>{nxt}</continueInx><totalRowCount>{len(rows)}</totalRowCount>"
        ]
        for i, col in enumerate(cols):
            parts.append(f"<SqlResult_PI><attriInx>{col}</attriInx><reslen>{256}</reslen>")
            parts.extend(f"<value>{xesc(r[i])}</value>" for r in page)
            parts.append("</SqlResult_PI>")
        parts.append("</GenQueryOut_PI>")
        return Reply(0, "".join(parts))
