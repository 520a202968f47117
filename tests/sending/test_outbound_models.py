"""MetaData / ActionResult: frozen, masked when sanitized, ``sanitize`` on the wire only if True."""

from __future__ import annotations

import attrs
import pytest

from ultimate_async.models.outbound import ActionResult, MetaData, metadata_to_wire


@pytest.mark.parametrize("cls", [MetaData, ActionResult])
def test_repr_masks_sanitized_values(cls: type[MetaData] | type[ActionResult]) -> None:
    secret = cls("ssn", "123-45-6789", sanitize=True)
    assert "123-45-6789" not in repr(secret)
    assert "value='***'" in repr(secret)
    assert "ssn" in repr(secret)
    plain = cls("plan", "gold")
    assert repr(plain) == f"{cls.__name__}(key='plan', value='gold')"
    # formatting inside containers goes through repr too
    assert "123-45-6789" not in f"{[secret]}"


@pytest.mark.parametrize("cls", [MetaData, ActionResult])
def test_frozen(cls: type[MetaData] | type[ActionResult]) -> None:
    item = cls("k", "v")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        item.value = "w"  # type: ignore[misc]
    assert item == cls("k", "v")


def test_sanitize_is_sent_only_when_true() -> None:
    assert MetaData("k", "v").to_wire() == {"key": "k", "value": "v"}
    assert MetaData("k", "v", sanitize=True).to_wire() == {
        "key": "k",
        "value": "v",
        "sanitize": True,
    }
    assert ActionResult("k", 5).to_wire() == {"key": "k", "value": 5}
    assert ActionResult("k", "v", True).to_wire() == {"key": "k", "value": "v", "sanitize": True}


def test_metadata_accepts_mapping_or_iterable_of_metadata() -> None:
    assert metadata_to_wire({"a": "1", "b": "2"}) == [
        {"key": "a", "value": "1"},
        {"key": "b", "value": "2"},
    ]
    generated = (MetaData(k, v) for k, v in [("x", "y")])
    assert metadata_to_wire(generated) == [{"key": "x", "value": "y"}]
    assert metadata_to_wire([]) == []
