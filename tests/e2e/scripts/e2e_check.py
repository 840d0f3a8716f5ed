"""Helpers the in-container e2e script calls (run with /opt/irods-ingestd/bin/python from /src).

  e2e_check.py wait-objects ZONE N [TIMEOUT]   wait until /srv/landing/ZONE's files are in iRODS with
                                               the same bytes (N files expected)
  e2e_check.py journal-ingested ZONE N         the journal has a FILE_INGESTED entry with the fields
                                               for each of ZONE's N files; prints them
  e2e_check.py ingested-after PATH USEC        PATH's FILE_INGESTED entry is later than USEC (epoch us)
  e2e_check.py control CMD [JSON-ARGS]         a command to the iRODS test server's control port
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from irods.session import iRODSSession

from irods_ingestd.messages import MessageId

HOME = "/tempZone/home/rods"


def session() -> iRODSSession:
    return iRODSSession(host="127.0.0.1", port=1247, user="rods", password="rods", zone="tempZone")


def wait_objects(zone: str, n: int, timeout: float = 90) -> int:
    files = sorted(p for p in Path("/srv/landing", zone).rglob("*") if p.is_file())
    assert len(files) == n, f"{len(files)} files in the zone, expected {n}"
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    while time.monotonic() < deadline:
        missing = []
        with session() as s:
            for f in files:
                rel = f.relative_to(Path("/srv/landing", zone))
                target = f"{HOME}/{zone}/{rel}"
                try:
                    obj = s.data_objects.get(target)
                except Exception:  # noqa: BLE001 - not there (yet)
                    missing.append(target)
                    continue
                if obj.size != f.stat().st_size:
                    missing.append(f"{target} (size {obj.size} != {f.stat().st_size})")
                    continue
                with obj.open("r") as fh:
                    if fh.read() != f.read_bytes():
                        missing.append(f"{target} (content differs)")
        if not missing:
            print(f"all {n} files of {zone} are in iRODS")
            return 0
        time.sleep(1)
    print(f"not in iRODS after {timeout}s: {missing}")
    return 1


def journal_ingested(zone: str, n: int) -> int:
    out = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", f"MESSAGE_ID={MessageId.FILE_INGESTED}", f"INGEST_ZONE={zone}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    paths = {}
    for e in entries:
        for key in ("INGEST_ZONE", "INGEST_PATH", "IRODS_PATH", "INGEST_BYTES", "INGEST_SECONDS", "INGEST_RESULT"):
            if key not in e:
                print(f"entry without {key}: {e.get('MESSAGE')!r} {sorted(e)}")
                return 1
        paths[e["INGEST_PATH"]] = e
        print(f"journal: {e['MESSAGE']!r} INGEST_PATH={e['INGEST_PATH']} IRODS_PATH={e['IRODS_PATH']} "
              f"INGEST_BYTES={e['INGEST_BYTES']} RESULT={e['INGEST_RESULT']} unit={e.get('_SYSTEMD_UNIT')}")
    files = sorted(str(p) for p in Path("/srv/landing", zone).rglob("*") if p.is_file())
    rel = sorted(str(Path(p).relative_to(Path("/srv/landing", zone))) for p in files)
    found = [f for f, r in zip(files, rel, strict=True) if f in paths or r in paths]
    if len(found) != n:
        print(f"journal lists {len(found)} of {n} files of {zone}: {sorted(paths)}")
        return 1
    return 0


def ingested_after(path: str, usec: str) -> int:
    out = subprocess.run(
        ["journalctl", "-o", "json", "--no-pager", f"MESSAGE_ID={MessageId.FILE_INGESTED}", f"INGEST_PATH={path}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    stamps = [int(json.loads(line)["__REALTIME_TIMESTAMP"]) for line in out.splitlines() if line.strip()]
    if not stamps:
        print(f"no FILE_INGESTED entry for {path}")
        return 1
    delta = (max(stamps) - int(usec)) / 1e6
    print(f"{path} ingested {delta:.1f}s after the stop request")
    return 0 if delta > 0 else 1


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
