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


def test_a_name_too_long_for_the_vault_is_permanent_and_says_so() -> None:
    import irods.exception as iex

    from irods_ingestd.ingest.errors import describe, is_transient, unix_errno

    e = iex.get_exception_by_code(-528036)  # UNIX_FILE_RENAME_ERR + ENAMETOOLONG
    assert unix_errno(e) == 36 and not is_transient(e)
    assert describe(e) == "UNIX_FILE_RENAME_ERR (-528036): File name too long"
    assert is_transient(iex.get_exception_by_code(-528005))  # EIO: worth another attempt
    assert "vault" in describe(iex.get_exception_by_code(-306000))  # USER_STRLEN_TOOLONG


def test_register_refusal() -> None:
    assert names.register_refusal("/landing/ok 'name' %41") is None
    assert "protocol cannot carry" in (names.register_refusal("/landing/tab\there") or "")
    assert "protocol cannot carry" in (names.register_refusal("/landing/nc\uffff") or "")
    assert "physical path is 1088 bytes" in (names.register_refusal("/" + "p" * 1087) or "")
    assert names.register_refusal("/" + "p" * 1086) is None


def test_sidecar_text_xml_cannot_carry() -> None:
    from irods_ingestd.sidecars import avu_problem

    for bad in ("\x01", "\x1b[0m", "\x0b", "\ufffe", "\uffff"):
        assert "cannot carry" in (avu_problem("a", f"v{bad}") or ""), repr(bad)
        assert "cannot carry" in (avu_problem(f"a{bad}", "v") or ""), repr(bad)
    assert avu_problem("a", "tab\tnewline\ncr\r del\x7f \U0010fffd") is None


def test_an_object_made_meanwhile_is_explained() -> None:
    import irods.exception as iex

    from irods_ingestd.ingest.errors import describe, is_transient

    e = iex.get_exception_by_code(-809000)
    assert "made meanwhile" in describe(e) and not is_transient(e)


def test_a_mapped_name_and_its_literal_twin_never_share_a_temporary_object() -> None:
    """`a\\xff` (mapped to `a%FF`) and a landing file literally called `a%FF` have one target but different
    locks (a lock is per landing path): their temporary and set-aside names must differ, or two workers write
    one .part at once (seen on the real server: the object kept pointed at a vault file the other removed)."""
    import hashlib

    from irods_ingestd import names as nm

    mapped, literal = nm.target_for("/z/c", "d\udcfe/a\udcff"), nm.target_for("/z/c", "d%FE/a%FF")
    assert mapped.path == literal.path and mapped.mapped and not literal.mapped
    assert mapped.part_name != literal.part_name and mapped.old_name != literal.old_name
    # an unmapped name keeps the tag earlier versions gave it (their leftovers are still recognised)
    tag = hashlib.blake2b(literal.path.encode(), digest_size=4).hexdigest()
    assert literal.part_name == f".a%FF.ingestd-{tag}.part"
