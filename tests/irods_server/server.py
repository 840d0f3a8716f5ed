"""The iRODS test server: sockets, framing, startup, authentication, dispatch, faults and the control channel.

The API handlers are mixed in from namespace.py (collections, rename, unlink, trash), dataobj.py (data object
I/O), register.py (register, checksums) and catalog_api.py (metadata, ACLs, GenQuery). See the package
docstring (``tests/irods_server/__init__.py``) for what this is and is not.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import socket
import struct
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from irods.message import AuthResponse, StartupPack
from irods.message import ClientServerNegotiation as CsNeg

from .avus import Avus
from .catalog import Catalog
from .catalog_api import CatalogApi
from .dataobj import DataObjectApi, Desc
from .errors import DropConnection, E, IrodsError
from .namespace import NamespaceApi
from .register import BulkRegisterApi, RegisterApi
from .wire import API_NAMES, Reply, api_num, error_xml, json_reply, native_digest, pack_xml, unpack, unpack_json

log = logging.getLogger("irods_test_server")

DEFAULT_VERSION = "5.0.2"  # what the real server of ../shared/irods reports


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
        self.statements: dict[int, tuple[list[int], list[list[str]], int]] = {}  # open GenQueries

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
                if reply is None:
                    continue  # a real server does not answer an API number it does not know
                errxml = ""
                if reply.status < 0 and reply.err:
                    errxml = error_xml(reply.err_status or reply.status, reply.err)
                self.send_msg("RODS_API_REPLY", reply.status, reply.body, errxml, reply.bs)
        except (ConnectionError, OSError, struct.error, ET.ParseError, DropConnection) as exc:
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


class IrodsTestServer(NamespaceApi, DataObjectApi, RegisterApi, BulkRegisterApi, CatalogApi):
    def __init__(self, host: str, port: int, vault: str, catalog: str, zone: str = "tempZone",
                 users: list[tuple[str, str, str]] | None = None, version: str = DEFAULT_VERSION,
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
        self.avus = Avus(self.catalog)
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
            20002: self.h_atomic_metadata, 707: self.h_mod_acl, 702: self.h_gen_query, 688: self.h_bulk_reg,
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
    def dispatch(self, conn: ClientConn, api: int, body: bytes, bs: bytearray) -> Reply | None:
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
            if api not in API_NAMES:
                log.warning("conn %d: unknown API number %d, not answered (as a real server does)", conn.cid, api)
                return None
            return Reply(E.SYS_UNMATCHED_API_NUM, err=f"API {name} is not implemented by the test server")
        if api not in self.no_auth_apis and conn.user is None:
            return Reply(E.SYS_NO_API_PRIV, err="not authenticated")
        try:
            return handler(conn, body, bs)
        except IrodsError as exc:
            return Reply(exc.code, err=exc.msg)
        except DropConnection:
            raise
        except Exception as exc:
            log.exception("handler for %s failed", name)
            return Reply(E.SYS_INVALID_INPUT_PARAM, err=f"test server error: {exc!r}")

    # --- authentication ----------------------------------------------------------------------
    def _check_password(self, conn: ClientConn, user: str, digest: bytes) -> Reply | None:
        row = self.catalog.user(user)
        if row is None or row[2] == "rodsgroup":
            self.counters["auth_failed"] += 1
            return Reply(E.CAT_INVALID_USER, err=f"no user {user!r}")
        if conn.challenge is None:
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
