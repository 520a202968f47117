"""``help(Model)`` explains every field: each public model documents its attributes."""

from __future__ import annotations

import pydoc
import re

import attrs
import pytest

import ultimate_async

MODELS = sorted(
    (
        getattr(ultimate_async, name)
        for name in ultimate_async.__all__
        if attrs.has(getattr(ultimate_async, name))
        and getattr(ultimate_async, name).__module__.startswith("ultimate_async.models.")
    ),
    key=lambda cls: cls.__name__,
)


def test_the_public_models_are_found() -> None:
    names = {cls.__name__ for cls in MODELS}
    assert {"BotMessage", "ActionCall", "MetaData", "AutomationReply"} <= names


@pytest.mark.parametrize("cls", MODELS, ids=lambda cls: cls.__name__)
def test_help_describes_every_field(cls: type) -> None:
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    described = set(re.findall(r":ivar (\w+):\s+\S", cls.__doc__ or ""))
    assert described == {field.name for field in attrs.fields(cls)}
    for name in described:
        assert f":ivar {name}:" in text
