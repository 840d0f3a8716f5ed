"""The fanotify event parser on hand-made buffers (the layout of linux/fanotify.h): no privileges needed."""

from __future__ import annotations

import os
import struct

import pytest

from irods_ingestd.watch import fanotify_sys as S


def event(mask: int, fsid: bytes = b"F" * 8, handle: bytes = b"H" * 8, name: str | None = "x.dat",
          htype: int = 1) -> bytes:
    info = fsid + struct.pack("=Ii", len(handle), htype) + handle
    itype = S.FAN_EVENT_INFO_TYPE_DFID
    if name is not None:
        info += os.fsencode(name) + b"\0"
        itype = S.FAN_EVENT_INFO_TYPE_DFID_NAME
    info += b"\0" * (-(len(info) + 4) % 4)  # records are padded to 4 bytes
    rec = struct.pack("=BBH", itype, 0, len(info) + 4) + info
    return struct.pack("=IBBHQii", 24 + len(rec), 3, 0, 24, mask, -1, 1234) + rec


def test_events_give_mask_directory_key_and_name() -> None:
    buf = event(S.FAN_CLOSE_WRITE, name="a b.dat") + event(S.FAN_CREATE | S.FAN_ONDIR, handle=b"D" * 12, name="sub")
    assert S.parse(buf) == [
        (S.FAN_CLOSE_WRITE, b"F" * 8 + struct.pack("=Ii", 8, 1) + b"H" * 8, "a b.dat"),
        (S.FAN_CREATE | S.FAN_ONDIR, b"F" * 8 + struct.pack("=Ii", 12, 1) + b"D" * 12, "sub"),
    ]


def test_a_name_that_is_not_utf8_survives() -> None:
    [(_, _, name)] = S.parse(event(S.FAN_MOVED_TO, name="caf\udce9"))  # b"caf\xe9" on disk
    assert name == "caf\udce9"


def test_an_event_without_name_and_an_overflow() -> None:
    overflow = struct.pack("=IBBHQii", 24, 3, 0, 24, S.FAN_Q_OVERFLOW, -1, 0)
    assert S.parse(event(S.FAN_ATTRIB | S.FAN_ONDIR, name=None) + overflow) == [
        (S.FAN_ATTRIB | S.FAN_ONDIR, b"F" * 8 + struct.pack("=Ii", 8, 1) + b"H" * 8, ""),
        (S.FAN_Q_OVERFLOW, b"", ""),
    ]


def test_an_unknown_metadata_version_is_an_error() -> None:
    buf = bytearray(event(S.FAN_CREATE))
    buf[4] = 2
    with pytest.raises(OSError):
        S.parse(bytes(buf))


def test_the_key_of_a_directory_is_what_its_events_carry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    try:
        key = S.handle_key(str(tmp_path))
    except OSError as e:
        pytest.skip(f"name_to_handle_at: {e}")
    assert key[:8] == S.fsid_of(str(tmp_path))
    hbytes, _htype = struct.unpack_from("=Ii", key, 8)
    assert len(key) == 16 + hbytes
