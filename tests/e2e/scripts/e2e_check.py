"""Helpers the in-container e2e script calls (run with /opt/irods-ingestd/bin/python from /src).

  e2e_check.py wait-objects ZONE N [TIMEOUT]   wait until /srv/landing/ZONE's N files are in iRODS
                                               with the same size, checksum and bytes, and nothing
                                               else is in the zone's collection
  e2e_check.py journal-ingested ZONE N         the journal has a FILE_INGESTED entry with the fields
                                               for each of ZONE's N files; prints them
  e2e_check.py ingested-after PATH USEC        PATH's FILE_INGESTED entry is later than USEC (epoch us)
                                               and earlier than its worker unit's end
  e2e_check.py control CMD [JSON-ARGS]         a command to the iRODS test server's control port

The server is the one the host described in the run directory (tests/e2e/conftest.py, E2eIrods):
/e2e/irods_environment.json, /e2e/irods-password, and $E2E_COLLECTION (the run's collection; zone Z
ingests into $E2E_COLLECTION/Z).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from irods.session import iRODSSession

from irods_ingestd.messages import MessageId

RUN = Path("/e2e")
LANDING = Path("/srv/landing")
CHUNK = 8 << 20
UNIT_STOPPED = "9d1aaa27d60140bd96365438aad20286"  # systemd's SD_MESSAGE_UNIT_STOPPED


def collection() -> str:
    return os.environ["E2E_COLLECTION"]


def session() -> iRODSSession:
    env = json.loads((RUN / "irods_environment.json").read_text())
    return iRODSSession(
        host=env["irods_host"],
        port=int(env["irods_port"]),
        user=env["irods_user_name"],
        zone=env["irods_zone_name"],
        password=(RUN / "irods-password").read_text().rstrip("\r\n"),
    )


class Local:
    """A landing file and its digests (computed once: the file does not change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        sha, md5 = hashlib.sha256(), hashlib.md5()  # noqa: S324 - iRODS's MD5 scheme, not security
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                sha.update(chunk)
                md5.update(chunk)
        self.sha256 = sha.digest()
        self.irods_sha2 = "sha2:" + base64.b64encode(self.sha256).decode()
        self.md5 = md5.hexdigest()


def _differs(s: Any, target: str, local: Local) -> str | None:
    """None if ``target`` holds the file's bytes with its checksum, else what is wrong."""
    try:
        obj = s.data_objects.get(target)
    except Exception:  # noqa: BLE001 - not there (yet)
        return "missing"
    if obj.size != local.size:
        return f"size {obj.size} != {local.size}"
    stored = obj.checksum or ""
    want = local.irods_sha2 if stored.startswith("sha2:") else local.md5
    if stored != want:
        return f"checksum {stored or '(none)'} != {want}"
    sha = hashlib.sha256()
    with obj.open("r") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
    if sha.digest() != local.sha256:
        return "content differs (same size and checksum)"
    return None


def _all_objects(s: Any, coll: str) -> set[str]:
    """Every data object's path below ``coll`` (nothing if it does not exist yet)."""
    if not s.collections.exists(coll):
        return set()
    found: set[str] = set()
    for c, _subs, objs in s.collections.get(coll).walk():
        found.update(f"{c.path}/{o.name}" for o in objs)
    return found


def wait_objects(zone: str, n: int, timeout: float = 90) -> int:
    root = LANDING / zone
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) == n, f"{len(files)} files in the zone, expected {n}"
    locals_ = {f"{collection()}/{zone}/{p.relative_to(root)}": Local(p) for p in files}
    deadline = time.monotonic() + timeout
    problems: list[str] = []
    while True:
        problems = []
        with session() as s:
            for target, local in locals_.items():
                why = _differs(s, target, local)
                if why:
                    problems.append(f"{target}: {why}")
            extra = _all_objects(s, f"{collection()}/{zone}") - set(locals_)
            problems += [f"{p}: not a landing file (left behind?)" for p in sorted(extra)]
        if not problems:
            print(f"all {n} files of {zone} are in iRODS (same size, checksum and bytes), nothing else")
            return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    print(f"after {timeout}s: {problems}")
    return 1


def _journal(*matches: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", *matches], check=True, capture_output=True, text=True
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def journal_ingested(zone: str, n: int) -> int:
    entries = _journal(f"MESSAGE_ID={MessageId.FILE_INGESTED}", f"INGEST_ZONE={zone}")
    paths = {}
    for e in entries:
        for key in ("INGEST_ZONE", "INGEST_PATH", "IRODS_PATH", "INGEST_BYTES", "INGEST_SECONDS", "INGEST_RESULT"):
            if key not in e:
                print(f"entry without {key}: {e.get('MESSAGE')!r} {sorted(e)}")
                return 1
        paths[e["INGEST_PATH"]] = e
        print(f"journal: {e['MESSAGE']!r} INGEST_PATH={e['INGEST_PATH']} IRODS_PATH={e['IRODS_PATH']} "
              f"INGEST_BYTES={e['INGEST_BYTES']} RESULT={e['INGEST_RESULT']} unit={e.get('_SYSTEMD_UNIT')}")
    root = LANDING / zone
    files = sorted(p for p in root.rglob("*") if p.is_file())
    found = [p for p in files if str(p) in paths or str(p.relative_to(root)) in paths]
    if len(found) != n:
        print(f"journal lists {len(found)} of {n} files of {zone}: {sorted(paths)}")
        return 1
    wrong = [e["IRODS_PATH"] for e in paths.values() if not e["IRODS_PATH"].startswith(f"{collection()}/{zone}/")]
    if wrong:
        print(f"IRODS_PATH outside {collection()}/{zone}: {wrong}")
        return 1
    return 0


def ingested_after(path: str, usec: str) -> int:
    entries = _journal(f"MESSAGE_ID={MessageId.FILE_INGESTED}", f"INGEST_PATH={path}")
    if not entries:
        print(f"no FILE_INGESTED entry for {path}")
        return 1
    last = max(entries, key=lambda e: int(e["__REALTIME_TIMESTAMP"]))
    delta = (int(last["__REALTIME_TIMESTAMP"]) - int(usec)) / 1e6
    print(f"{path} ingested {delta:.1f}s after the stop request")
    if delta <= 0:
        return 1
    # The worker that ran it was still there when it finished: KillMode=mixed let the job end.
    unit = last.get("_SYSTEMD_UNIT", "")
    if not unit.startswith("irods-ingestd-worker@"):
        print(f"the entry does not come from a worker unit: _SYSTEMD_UNIT={unit!r}")
        return 1
    # (systemd's own "Stopped <unit>" record: the unit's properties are gone once it is unloaded)
    stopped = _journal("_PID=1", f"MESSAGE_ID={UNIT_STOPPED}", f"UNIT={unit}")
    if not stopped:
        print(f"no 'Stopped {unit}' record from systemd")
        return 1
    lead = (max(int(e["__REALTIME_TIMESTAMP"]) for e in stopped) - int(last["__REALTIME_TIMESTAMP"])) / 1e6
    print(f"{unit}, which ingested it, stopped {lead:.1f}s after that")
    return 0 if lead >= 0 else 1


def control(cmd: str, args: str = "{}") -> int:
    with socket.create_connection(("127.0.0.1", 1248), timeout=10) as s:
        s.sendall(json.dumps({"cmd": cmd, **json.loads(args)}).encode() + b"\n")
        line = s.makefile("rb").readline()
    print(line.decode().strip())
    return 0 if json.loads(line).get("ok") else 1


def main() -> int:
    cmd, *args = sys.argv[1:]
    if cmd == "wait-objects":
        return wait_objects(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 90)
    if cmd == "journal-ingested":
        return journal_ingested(args[0], int(args[1]))
    if cmd == "ingested-after":
        return ingested_after(args[0], args[1])
    if cmd == "control":
        return control(*args)
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main())
