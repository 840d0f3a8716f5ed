"""names: U+FFFE and U+FFFF (valid UTF-8, not XML characters) are mapped like control characters."""

from __future__ import annotations

from irods_ingestd import names


def test_xml_noncharacters_are_mapped_reversibly() -> None:
    for ch, esc in (("\ufffe", "%EF%BF%BE"), ("\uffff", "%EF%BF%BF")):
        rel = f"a%{ch}b"
        t = names.target_for("/z/c", rel)
        assert t.mapped and t.name == f"a%25{esc}b"
        assert names.unmap_component(t.name) == rel.encode()
    assert not names.target_for("/z/c", "a\ufffd\ufdd0\U0010fffd").mapped  # XML characters: kept as they are
