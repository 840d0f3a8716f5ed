"""`make bench`: the benchmarks of irods-ingestd, side by side, in one run.

    python -m bench.run [--quick] [--only NAME ...] [--keep]

Builds its data in a temporary directory, starts its own redis-server and iRODS test server (or uses a
real iRODS from INGESTD_TEST_IRODS_ENV / INGESTD_TEST_IRODS_PASSWORD), runs the benchmarks and prints a
table of figures, ratios and PASS/MISS against the goals. NAME: throughput, walk, burst, latency, memory.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .common import Results, Services, loadavg, machine

BENCHES = ["throughput", "walk", "burst", "latency", "memory"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark (repeatable)")
    ap.add_argument("--quick", action="store_true", help="smaller data sets (a few minutes in all)")
    ap.add_argument("--dir", help="work directory (default: a new temporary directory, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = ap.parse_args(argv)
    names = args.only or BENCHES
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ingestd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"irods-ingestd benchmarks {time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {machine()}; "
          f"load {loadavg()}; work dir {work}; {'quick' if args.quick else 'full'} run", flush=True)
    svc = Services(work)
    res = Results()
    t0 = time.monotonic()
    try:
        svc.start()
        print(f"services: {svc.describe()}", flush=True)
        for name in names:
            print(f"\n== {name} (load {loadavg()})", flush=True)
            mod = importlib.import_module(f".{name}", __package__)
            tb = time.monotonic()
            try:
                mod.run(svc, work, res, args.quick)
            except Exception as e:  # noqa: BLE001 - one benchmark failing does not hide the others
                traceback.print_exc()
                res.fail(name, "benchmark", f"{type(e).__name__}: {e}")
            print(f"   ({name} took {time.monotonic() - tb:.0f}s)", flush=True)
    finally:
        svc.stop()
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nResults ({time.monotonic() - t0:.0f}s in all; load at the end {loadavg()}):\n")
    print(res.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
