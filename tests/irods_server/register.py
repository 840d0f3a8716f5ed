"""Register in place (PHY_PATH_REG) and checksums (DATA_OBJ_CHKSUM) of the test server.

A real server touches a registered file as its unprivileged service account (unix user ``irods``). When the
test server runs as root, it emulates that account as a user that neither owns the file nor shares its
group, so only the "other" permission bits count:
- stat (always done) needs search permission on every directory above the file: ``UNIX_FILE_STAT_ERR``;
- reading it (a checksum) needs read permission on the file: ``UNIX_FILE_OPEN_ERR``;
- listing a directory (registering a tree) needs read and search on it: ``UNIX_FILE_CREATE_ERR``
  (what a real server's opendir failure says). As another user, the operating system decides.
"""

from __future__ import annotations

import errno
import json
import os
import posixpath
import stat

from irods.message import FileOpenRequest

from .base import ServerBase
from .catalog import now_ts
from .errors import E, IrodsError
from .wire import Conn, Reply, kvp, pack_xml, sha2_file, unpack

NO_CHECKSUM_WARNING = -862000  # in the JSON of a verification that found no checksum in the catalog


def _emulating() -> bool:
    return os.geteuid() == 0


def service_stat(phys: str) -> os.stat_result:
    """os.stat as the server's service account would get it, or the iRODS error it would answer."""
    if _emulating():
        parts = phys.split("/")
        for i in range(1, len(parts) - 1):
            d = "/".join(parts[: i + 1]) or "/"
            try:
                st = os.stat(d)
            except OSError as exc:
                raise IrodsError(E.UNIX_FILE_STAT_ERR - (exc.errno or 0), f"{phys}: {exc.strerror}") from exc
            if not stat.S_ISDIR(st.st_mode):
                raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.ENOTDIR, f"{phys}: Not a directory")
            if not st.st_mode & stat.S_IXOTH:
                raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.EACCES, f"{phys}: Permission denied")
    try:
        return os.stat(phys)
    except OSError as exc:
        raise IrodsError(E.UNIX_FILE_STAT_ERR - (exc.errno or 0), f"{phys}: {exc.strerror}") from exc


def service_checksum(phys: str) -> str:
    """The sha2 checksum of a file the service account must read (UNIX_FILE_OPEN_ERR if it cannot)."""
    st = service_stat(phys)
    readable = bool(st.st_mode & stat.S_IROTH) if _emulating() else os.access(phys, os.R_OK)
    if not readable:
        raise IrodsError(E.UNIX_FILE_OPEN_ERR - errno.EACCES, f"{phys}: Permission denied")
    try:
        return sha2_file(phys)
    except OSError as exc:
        raise IrodsError(E.UNIX_FILE_OPEN_ERR - (exc.errno or 0), f"{phys}: {exc.strerror}") from exc


def service_listdir_check(phys: str) -> None:
    st = service_stat(phys)
    if not stat.S_ISDIR(st.st_mode):
        raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.ENOTDIR, f"{phys} is not a directory")
    if _emulating():
        ok = st.st_mode & stat.S_IROTH and st.st_mode & stat.S_IXOTH
    else:
        ok = os.access(phys, os.R_OK | os.X_OK)
    if not ok:
        raise IrodsError(E.UNIX_FILE_CREATE_ERR - errno.EACCES, f"opendir {phys}: Permission denied")


def _cannot_list(exc: OSError) -> None:
    raise IrodsError(E.UNIX_FILE_CREATE_ERR - (exc.errno or 0), f"opendir {exc.filename}: {exc.strerror}")


def verification_result(code: int, message: str, severity: str) -> str:
    text = json.dumps([{"error_code": code, "message": message, "severity": severity}], separators=(",", ":"))
    return pack_xml("STR_PI", myStr=text)


class RegisterApi(ServerBase):
    def h_phy_path_reg(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        kw = kvp(msg)
        phys = kw.get("filePath")
        if not phys:
            raise IrodsError(E.SYS_INVALID_FILE_PATH, "no filePath")
        if not phys.startswith("/"):  # a real server resolves it against its own working directory
            raise IrodsError(E.UNIX_FILE_STAT_ERR - errno.ENOENT, f"{phys}: No such file or directory")
        phys = os.path.normpath(phys)
        self.check_resource(kw)
        if "collection" in kw:
            return self._register_tree(conn, path, phys, kw)
        self._register_file(conn, path, phys, kw)
        return Reply(0)

    def _register_file(self, conn: Conn, path: str, phys: str, kw: dict) -> None:
        st = service_stat(phys)
        if not stat.S_ISREG(st.st_mode):
            raise IrodsError(E.SYS_PATH_IS_NOT_A_FILE, f"{phys} is not a file")
        with self.catalog.tx():
            if self.catalog.coll(path):
                raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, path)
            parent = self.catalog.coll(posixpath.dirname(path))
            if not parent:
                raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(path))
            if self.catalog.data(path) is not None:  # also with forceFlag
                raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, path)
            # verifyChksum computes and stores like regChksum; a `chksum` keyword is not compared (iRODS 5.0.2)
            checksum = service_checksum(phys) if "regChksum" in kw or "verifyChksum" in kw else ""
            self.catalog.insert_data(path, parent[0], conn.user or "", phys, st.st_size, 1, checksum,
                                     kw.get("dataType", "generic"))  # fmt: skip

    def _register_tree(self, conn: Conn, path: str, phys: str, kw: dict) -> Reply:
        """A directory's collection is made before the directory is listed: one that cannot be listed
        stays registered as an empty collection, as with a real server."""
        service_stat(phys)
        sub = {k: v for k, v in kw.items() if k not in ("collection", "forceFlag")}
        for dirpath, dirnames, filenames in os.walk(phys, onerror=_cannot_list):
            rel = os.path.relpath(dirpath, phys)
            lpath = path if rel == "." else f"{path}/{rel}"
            if not self.catalog.coll(lpath):
                parent = posixpath.dirname(lpath)
                if not self.catalog.coll(parent):
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, parent)
                self.catalog.insert_coll(lpath, conn.user or "")
            service_listdir_check(dirpath)
            dirnames.sort()
            for name in sorted(filenames):
                self._register_file(conn, f"{lpath}/{name}", os.path.join(dirpath, name), sub)
        return Reply(0)

    def h_chksum(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        msg = unpack(FileOpenRequest, body)
        path = self.norm(msg._values.get("objPath"))
        kw = kvp(msg)
        row = self.catalog.data(path)
        if row is None:
            raise IrodsError(E.CAT_NO_ROWS_FOUND, path)
        phys = row["data_path"]
        actual = service_checksum(phys) if not self.in_vault(phys) else sha2_file(phys)
        stored = row["checksum"] or ""
        if "verifyChksum" in kw:  # compares, never stores
            if not stored:
                return Reply(E.CHECK_VERIFICATION_RESULTS, verification_result(
                    NO_CHECKSUM_WARNING, "WARNING: No checksum available for replica [0].", "warning"))
            if stored != actual:
                return Reply(E.CHECK_VERIFICATION_RESULTS, verification_result(
                    E.USER_CHKSUM_MISMATCH, "ERROR: Computed checksum does not match what is in the catalog for "
                    "replica [0].", "error"), err=f"verifyDataObjChksum: computed checksum [{actual}] != catalog "
                    f"value [{stored}] for [{path}]", err_status=E.USER_CHKSUM_MISMATCH)  # fmt: skip
            return Reply(0)
        if stored and "forceChksum" not in kw:
            return Reply(0, pack_xml("STR_PI", myStr=stored))
        self.catalog.update_data(row["data_id"], checksum=actual, modify_ts=now_ts())
        return Reply(0, pack_xml("STR_PI", myStr=actual))


class BulkRegisterApi(ServerBase):
    """BULK_DATA_OBJ_REG (688) as iRODS 5.0.2 runs it: rows of a GenQueryOut_PI (logical path, size, physical
    path, replica number, checksum ...), each registered as given (no stat, no checksum computed), all in
    one transaction: one bad row rolls the call back. Answers the new objects' ids (D_DATA_ID)."""

    def h_bulk_reg(self, conn: Conn, body: bytes, bs: bytearray) -> Reply:
        from irods.message import GenQueryResponse

        msg = unpack(GenQueryResponse, body)
        n = int(msg._values.get("rowCnt") or 0)
        cols = {int(c._values.get("attriInx") or 0): list(c._values.get("value") or [])
                for c in msg._values.get("SqlResult_PI") or []}
        for needed in (403, 406, 407, 409, 410, 421, 999999, 404, 423):
            if needed not in cols:
                raise IrodsError(E.UNMATCHED_KEY_OR_INDEX, f"column {needed} missing")
        ids = []
        with self.catalog.tx():
            for i in range(n):
                path = self.norm(cols[403][i])
                if self.catalog.coll(path):
                    raise IrodsError(E.CAT_NAME_EXISTS_AS_COLLECTION, path)
                parent = self.catalog.coll(posixpath.dirname(path))
                if not parent:
                    raise IrodsError(E.CAT_UNKNOWN_COLLECTION, posixpath.dirname(path))
                if self.catalog.data(path) is not None:
                    raise IrodsError(E.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME, path)
                checksum = (cols.get(415) or [""] * n)[i] or ""
                ids.append(self.catalog.insert_data(path, parent[0], conn.user or "", cols[410][i], int(cols[407][i]),
                                                    1, checksum, cols[406][i] or "generic"))
        values = "".join(f"<value>{x}</value>" for x in ids)
        return Reply(0, f"<GenQueryOut_PI><rowCnt>{n}</rowCnt><attriCnt>1</attriCnt><continueInx>0</continueInx>"
                        f"<totalRowCount>0</totalRowCount><SqlResult_PI><attriInx>401</attriInx><reslen>{1088}</reslen>"
                        f"{values}</SqlResult_PI></GenQueryOut_PI>")
