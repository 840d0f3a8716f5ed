"""The per-file Redis lock (real Redis)."""

from __future__ import annotations

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
