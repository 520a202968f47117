"""Session lifecycle: lazy, loop-free construction; idempotent close; borrowed sessions; repr."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import aiohttp
import pytest

from ultimate_async.session import Session

API_KEY = "sk-live-NEVER-PRINT-ME"


def test_construction_needs_no_event_loop() -> None:
    # Plain sync test: no running loop. Building a Session must not touch asyncio.
    session = Session(API_KEY, "bot")
    assert not session.closed


def test_usable_from_a_loop_started_after_construction() -> None:
    session = Session(API_KEY, "bot", base_url="http://127.0.0.1:9")

    async def main() -> bool:
        await session.__aenter__()  # creates the ClientSession in *this* loop
        await session.aclose()
        return session.closed

    assert asyncio.run(main()) is True


async def test_client_session_is_created_lazily_on_first_call(platform: Any) -> None:
    session = Session(API_KEY, "bot", base_url=platform.url)
    assert session._transport._session is None
    await session.chat.end_session("c1")
    assert isinstance(session._transport._session, aiohttp.ClientSession)
    await session.aclose()
    assert platform.hits == 1


async def test_aclose_is_idempotent_and_closes_the_owned_pool(platform: Any) -> None:
    session = Session(API_KEY, "bot", base_url=platform.url)
    await session.chat.end_session("c1")
    owned = session._transport._session
    assert owned is not None
    await session.aclose()
    await session.aclose()
    assert owned.closed
    assert session.closed


async def test_aclose_before_any_use_is_fine() -> None:
    session = Session(API_KEY, "bot")
    await session.aclose()
    assert session.closed


async def test_use_after_close_raises_runtime_error(platform: Any) -> None:
    async with Session(API_KEY, "bot", base_url=platform.url) as session:
        await session.chat.end_session("c1")
    with pytest.raises(RuntimeError, match="closed"):
        await session.chat.send_message("c1", "too late")
    with pytest.raises(RuntimeError, match="closed"):
        async with session:
            pass
    assert platform.hits == 1


async def test_borrowed_http_session_is_used_and_never_closed(platform: Any) -> None:
    async with aiohttp.ClientSession(headers={"X-App": "mine"}) as http:
        async with Session(API_KEY, "bot", base_url=platform.url, http_session=http) as session:
            await session.chat.end_session("c1")
        assert session.closed
        assert not http.closed
        # still usable by its owner
        async with http.post(platform.url + "/other") as resp:
            assert resp.status == 200
    first = platform.requests[0]
    assert first.headers["Authorization"] == API_KEY
    assert first.headers["botid"] == "bot"
    assert first.headers["X-App"] == "mine"  # the borrowed session's own defaults still apply
    assert platform.hits == 2


async def test_borrowed_session_use_after_close_raises(platform: Any) -> None:
    async with aiohttp.ClientSession() as http:
        session = Session(API_KEY, "bot", base_url=platform.url, http_session=http)
        await session.aclose()
        with pytest.raises(RuntimeError, match="closed"):
            await session.chat.end_session("c1")
    assert platform.hits == 0


async def test_no_unclosed_session_warning(platform: Any) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with Session(API_KEY, "bot", base_url=platform.url) as session:
            await session.chat.end_session("c1")
        del session
        gc.collect()
    assert not [w for w in caught if "nclosed" in str(w.message)]


async def test_repr_hides_the_key() -> None:
    session = Session(API_KEY, "bot-7", base_url="https://api.test")
    text = repr(session)
    assert API_KEY not in text
    assert "bot-7" in text and "https://api.test" in text
    await session.aclose()
    assert "closed" in repr(session)


async def test_many_concurrent_calls_share_one_pool(platform: Any) -> None:
    async with Session(API_KEY, "bot", base_url=platform.url, connector_limit=4) as session:
        await asyncio.gather(*(session.chat.send_message(f"c{i}", "hi") for i in range(50)))
        connector = session._transport._session.connector  # type: ignore[union-attr]
        assert connector is not None and connector.limit == 4
    assert sorted(r.json()["platformConversationId"] for r in platform.requests) == sorted(
        f"c{i}" for i in range(50)
    )
