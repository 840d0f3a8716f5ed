"""Fixtures shared by the iRODS test server's own tests."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def sess(irods):  # type: ignore[no-untyped-def]
    """A python-irodsclient session to the server under test."""
    with irods.session() as s:
        yield s


@pytest.fixture
def coll(sess, irods, request):  # type: ignore[no-untyped-def]
    """An empty collection named after the test."""
    path = f"{irods.home}/{request.node.name}-{os.getpid()}"  # per session: concurrent sessions share the server
    if sess.collections.exists(path):
        sess.collections.remove(path, recurse=True, force=True)
    sess.collections.create(path)
    yield path
    if sess.collections.exists(path):
        sess.collections.remove(path, recurse=True, force=True)
