"""The per-file Redis lock (real Redis)."""

from __future__ import annotations

import os
import time

import redis

from irods_ingestd.locks import FileLock


def test_one_holder_at_a_time_and_release_only_own(redis_conn: redis.Redis) -> None:
    a = FileLock(redis_conn, "ingestd", "z", "a/b", ttl=5)
    b = FileLock(redis_conn, "ingestd", "z", "a/b", ttl=5)
    other = FileLock(redis_conn, "ingestd", "z", "a/c", ttl=5)
    assert a.acquire()
    assert not b.acquire()
    assert other.acquire()
    assert not b.release()  # not held: nothing happens
    assert redis_conn.exists(a.key)
    assert a.release()
    assert b.acquire()


def test_expired_lock_taken_by_another_is_not_released_by_the_first(redis_conn: redis.Redis) -> None:
    a = FileLock(redis_conn, "ingestd", "z", "x", ttl=1)
    assert a.acquire()
    redis_conn.pexpire(a.key, 1)
    time.sleep(0.01)
    b = FileLock(redis_conn, "ingestd", "z", "x", ttl=5)
    assert b.acquire()
    assert not a.release()  # compare-and-delete: b's lock survives
    assert redis_conn.get(b.key) == b.token
    assert not a.extend()
    assert b.extend()


def test_context_manager(redis_conn: redis.Redis) -> None:
    with FileLock(redis_conn, "ingestd", "z", "y", ttl=5) as held:
        assert held
        with FileLock(redis_conn, "ingestd", "z", "y", ttl=5) as held2:
            assert not held2
    assert FileLock(redis_conn, "ingestd", "z", "y", ttl=5).acquire()


def test_a_held_lock_is_kept_alive_past_its_ttl_and_expires_when_its_holder_dies(redis_conn: redis.Redis) -> None:
    a = FileLock(redis_conn, "ingestd", "z", "long", ttl=1)
    assert a.acquire()
    time.sleep(2.5)  # a long transfer: the keeper renews the lock
    assert not FileLock(redis_conn, "ingestd", "z", "long", ttl=1, keep_alive=False).acquire()
    a._stop.set()  # the holder dies (its keeper stops renewing)
    time.sleep(1.5)
    assert FileLock(redis_conn, "ingestd", "z", "long", ttl=1, keep_alive=False).acquire()


def test_release_never_raises_when_redis_is_away(redis_server) -> None:  # type: ignore[no-untyped-def]
    r = redis_server.client()
    a = FileLock(r, "ingestd", "z", "gone", ttl=5)
    assert a.acquire()
    redis_server.stop(kill=True)
    try:
        assert a.release() is False
    finally:
        redis_server.start()


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _held_by(redis_conn: redis.Redis, rel: str, pid: int, machine: str | None = None) -> None:
    """A lock taken by a worker with this pid on this machine (or on another one)."""
    from irods_ingestd.locks import holder_token, lock_key

    token = holder_token(pid=pid, machine=machine)
    redis_conn.set(lock_key("ingestd", "z", rel), token, px=35_000)


def test_a_lock_whose_holder_died_on_this_machine_is_taken_at_once(redis_conn: redis.Redis) -> None:
    """A worker killed (SIGKILL, OOM) while it held a file: a worker of this machine takes the file at once
    instead of waiting out the lock's 35 s; the dead holder's lock is gone."""
    from irods_ingestd.locks import acquire_many

    _held_by(redis_conn, "one", _dead_pid())
    lk = FileLock(redis_conn, "ingestd", "z", "one", ttl=35, keep_alive=False)
    assert lk.acquire()
    assert lk.still_held()
    _held_by(redis_conn, "a", _dead_pid())
    _held_by(redis_conn, "b", os.getppid())  # alive
    got = acquire_many(redis_conn, "ingestd", "z", ["a", "b", "c"], ttl=35)
    assert [g is not None for g in got] == [True, False, True]
    assert all(g is None or g.still_held() for g in got)


def test_a_lock_of_another_machine_or_a_live_worker_is_left(redis_conn: redis.Redis) -> None:
    """Another machine's worker (its pids are not ours to test) and a live worker here keep their locks; so
    does a lock written by an older version (a bare token: who holds it is unknown)."""
    _held_by(redis_conn, "far", _dead_pid(), machine="another-boot-id")
    assert not FileLock(redis_conn, "ingestd", "z", "far", ttl=35, keep_alive=False).acquire()
    _held_by(redis_conn, "live", os.getppid())
    assert not FileLock(redis_conn, "ingestd", "z", "live", ttl=35, keep_alive=False).acquire()
    from irods_ingestd.locks import lock_key

    redis_conn.set(lock_key("ingestd", "z", "old"), b"0123456789abcdef", px=35_000)
    assert not FileLock(redis_conn, "ingestd", "z", "old", ttl=35, keep_alive=False).acquire()
