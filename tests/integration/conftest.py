"""Fixtures shared by the iRODS test server's own tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def sess(irods):  # type: ignore[no-untyped-def]
    """A python-irodsclient session to the server under test."""
    with irods.session() as s:
        yield s


@pytest.fixture
def coll(sess, irods, request):  # type: ignore[no-untyped-def]
    """An empty collection named after the test."""
    path = f"{irods.home}/{request.node.name}"
    if sess.collections.exists(path):
        sess.collections.remove(path, recurse=True, force=True)
    sess.collections.create(path)
    return path
