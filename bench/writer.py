"""A writer process for the burst and latency benchmarks.

    python -m bench.writer DIR NDIRS PER_DIR [--size B] [--rate R] [--times FILE]

Creates DIR/dNNNN/wNNNNNN.dat (NDIRS directories of PER_DIR files of B bytes) as fast as it can, or
at R files per second; prints a JSON line {"files", "seconds"}; with --times writes each file's
relative path and the time.time() just after its close, one per line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("ndirs", type=int)
    ap.add_argument("per_dir", type=int)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0.0)
    ap.add_argument("--times")
    a = ap.parse_args(argv)
    data = b"x" * a.size
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    times: list[str] = []
    n = 0
    t0 = time.perf_counter()
    for d in range(a.ndirs):
        dd = os.path.join(a.dir, f"d{d:04d}")
        os.makedirs(dd, exist_ok=True)
        for i in range(a.per_dir):
            if a.rate:
                due = t0 + n / a.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            p = f"{dd}/w{i:06d}.dat"
            fd = os.open(p, flags, 0o644)
            os.write(fd, data)
            os.close(fd)
            if a.times is not None:
                times.append(f"d{d:04d}/w{i:06d}.dat {time.time():.6f}")
            n += 1
    secs = time.perf_counter() - t0
    if a.times:
        with open(a.times, "w") as f:
            f.write("\n".join(times) + "\n")
    sys.stdout.write(json.dumps({"files": n, "seconds": secs}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
