"""The daemon's wake-up from a signal handler (SIGHUP: reload, SIGTERM: stop) must never deadlock its main
loop. A threading.Event set from a handler that interrupted the main thread inside the same Event's wait or
clear (both hold its lock) hangs the process for ever: a storm of SIGHUPs (`systemctl reload` in a loop) hung
the daemon in CI."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, signal, threading, time
    from irods_ingestd.watch.api import Inbox

    inbox = Inbox()
    got = [0]

    def on_hup(signum, frame):
        got[0] += 1
        inbox.wake()

    signal.signal(signal.SIGHUP, on_hup)
    stop = threading.Event()

    def storm():
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.0003)

    t = threading.Thread(target=storm, daemon=True)
    t.start()
    end = time.monotonic() + 4
    turns = 0
    while time.monotonic() < end:
        inbox.wait(0.0005)
        inbox.put_many([turns])
        inbox.drain(10)
        turns += 1
    stop.set()
    t.join()
    inbox.close()
    print("ok", got[0], turns)
""")


def test_a_storm_of_signals_never_deadlocks_the_main_loops_wait() -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("ok"), r.stdout + r.stderr
    _, signals, turns = r.stdout.split()
    assert int(signals) > 1000 and int(turns) > 100, r.stdout


def test_a_wake_before_the_wait_is_not_lost_and_items_wake_it() -> None:
    import time

    from irods_ingestd.watch.api import Inbox

    inbox = Inbox()
    try:
        inbox.wake()
        t0 = time.monotonic()
        inbox.wait(5)
        assert time.monotonic() - t0 < 1
        t0 = time.monotonic()
        inbox.wait(0.2)  # the wake was used up: this one waits its time
        assert time.monotonic() - t0 >= 0.15
        inbox.put_many([1, 2])
        t0 = time.monotonic()
        inbox.wait(5)
        assert time.monotonic() - t0 < 1 and inbox.drain(10) == [1, 2]
        for _ in range(100_000):  # more wakes than a pipe holds: never blocks the waker
            inbox.wake()
        inbox.wait(5)
        t0 = time.monotonic()
        inbox.wait(0.2)
        assert time.monotonic() - t0 >= 0.15, "wakes left over in the pipe"
    finally:
        inbox.close()
