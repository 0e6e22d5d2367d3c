"""new_id gives canonical version-4 UUID strings; is_uuid recognises the canonical form."""

from __future__ import annotations

import uuid
from collections import Counter

from alyx_server.tools.ids import is_uuid, new_id


def test_new_id_is_a_canonical_version_4_uuid() -> None:
    for _ in range(2000):
        text = new_id()
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert is_uuid(text)


def test_new_ids_differ_and_use_every_variant_digit() -> None:
    ids = [new_id() for _ in range(4000)]
    assert len(set(ids)) == len(ids)
    assert set(Counter(text[19] for text in ids)) == set("89ab")
    assert {text[14] for text in ids} == {"4"}


def test_is_uuid_accepts_any_case_and_refuses_other_shapes() -> None:
    assert is_uuid("0F8FAD5B-D9CB-469F-A165-70867728950E")
    assert not is_uuid("0f8fad5bd9cb469fa16570867728950e")
    assert not is_uuid("0f8fad5b-d9cb-469f-a165-70867728950")
    assert not is_uuid("0f8fad5b-d9cb-469f-a165-70867728950e ")
