"""The stdlib JSON path (no ``speed`` extra) must refuse what orjson refuses, never crash."""

from __future__ import annotations

import json

import pytest

from ultimate_async import _json
from ultimate_async.webhook import NoVerification, WebhookReceiver


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_json, "_orjson", None)


@pytest.mark.usefixtures("stdlib_json")
@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"data":' * 50_000,
        b'{"botId":"b","data":{"eventType":"sendMessage","confidence":NaN}}',
        b'{"botId":"b","data":{"eventType":"sendMessage","confidence":-Infinity}}',
    ],
    ids=["deep-array", "deep-object", "nan", "infinity"],
)
async def test_stdlib_path_answers_400_for_what_orjson_refuses(body: bytes) -> None:
    with pytest.raises(ValueError):
        _json.loads(body)
    receiver = WebhookReceiver(NoVerification())
    response = await receiver.handle(body, {})
    await receiver.aclose()
    assert response.status == 400
    assert b"invalid JSON" in response.body


@pytest.mark.usefixtures("stdlib_json")
def test_stdlib_path_encodes_compact_utf8() -> None:
    assert _json.dumps({"text": "grüße", "n": [1, 2]}) == '{"text":"grüße","n":[1,2]}'.encode()
    assert _json.loads('{"a":[1,{"b":null}]}') == {"a": [1, {"b": None}]}


@pytest.mark.usefixtures("stdlib_json")
@pytest.mark.parametrize(
    "body",
    [
        b'{"data":{"text":"\\ud800"}}',
        b'{"data":{"text":"x\\uDFFFy"}}',
        b'{"\\ud83d":1}',
        b'{"text":"\xed\xa0\x80"}',
        '{"text":"\\ud800"}'.encode("utf-16"),  # the escape is found in any encoding
    ],
    ids=["escape", "low-escape", "in-key", "cesu-bytes", "utf16-escape"],
)
def test_stdlib_path_refuses_lone_surrogates(body: bytes) -> None:
    """orjson refuses them; strings holding them cannot be encoded again (e.g. to forward)."""
    with pytest.raises(ValueError):
        _json.loads(body)


@pytest.mark.usefixtures("stdlib_json")
def test_stdlib_path_keeps_valid_surrogate_pairs() -> None:
    assert _json.loads(b'{"t":"\\ud83d\\ude00"}') == {"t": "\U0001f600"}
    assert _json.loads('{"t":"\\ud83d\\ude00 ok"}') == {"t": "\U0001f600 ok"}


@pytest.mark.usefixtures("stdlib_json")
@pytest.mark.parametrize(
    "text",
    [
        '{"a":1}',
        '{"a":1}\n',
        ' {"a":1} ',
        '{"a":1} x',
        '{"a":1}{}',
        '{"a":x}',
        '{"a":[1,]}',
        '{"a"',
    ],
    ids=["bare", "newline", "spaces", "extra", "two-objects", "bad-value", "trailing-comma", "cut"],
)
def test_stdlib_path_reads_objects_as_json_loads_does(text: str) -> None:
    """An object is scanned directly; around it, what ``json.loads`` accepts or refuses, and
    where it says the error is."""
    try:
        expected: object = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError) as refused:
            _json.loads(text.encode())
        assert str(refused.value) == str(exc)
    else:
        assert _json.loads(text.encode()) == expected
