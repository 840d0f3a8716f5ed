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
