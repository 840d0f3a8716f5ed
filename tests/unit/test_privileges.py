from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.privileges import can_switch, fs_user


@pytest.mark.skipif(not can_switch(), reason="needs root to switch the file-system user")
def test_fs_user_takes_away_roots_file_access():
    d = Path(tempfile.mkdtemp(prefix="ingestd-priv-"))
    d.chmod(0o755)
    try:
        private, public = d / "private", d / "public"
        private.write_bytes(b"x")
        private.chmod(0)
        public.write_bytes(b"y")
        public.chmod(0o644)
        assert private.read_bytes() == b"x"  # root
        with fs_user():
            assert public.read_bytes() == b"y"
            with pytest.raises(PermissionError):
                private.read_bytes()
        assert private.read_bytes() == b"x"
    finally:
        shutil.rmtree(d)
