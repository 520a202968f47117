"""A read-only, case-insensitive view of an ASGI request's header list, without copying it.

An ASGI server hands the headers over as a list of ``(name, value)`` byte pairs.  Turning it
into a ``CIMultiDict`` decodes every name and value of every delivery, while the pipeline reads
three or four of them; :class:`RawHeaders` keeps the list and decodes a value only when it is
asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TypeVar, overload

__all__ = ["RawHeaders"]

_T = TypeVar("_T")


class RawHeaders(Mapping[str, str]):
    """Header name -> value, case-insensitive; the first value of a repeated header (as
    ``multidict``'s ``get``), all of them from :meth:`getall`.  Values are decoded as Latin-1.

    Header names are taken as given lowercased, as the ASGI spec requires of servers (and
    Starlette assumes): the lookup table is the list itself, turned into a dict in one call.
    The ``repr`` names the headers but never shows a value (they may carry secrets).
    """

    __slots__ = ("_raw", "by_name")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        pairs = raw if isinstance(raw, list) else list(raw)
        first: dict[bytes, bytes] = dict(pairs)
        if len(first) != len(pairs):  # a repeated name: its first value wins
            first = dict(reversed(pairs))
        self._raw: list[tuple[bytes, bytes]] = pairs
        #: Lowercased name -> the first raw value: for adapters that check a few headers.
        self.by_name = first

    @overload
    def get(self, name: str, /) -> str | None: ...

    @overload
    def get(self, name: str, /, default: str | _T) -> str | _T: ...

    def get(self, name: str, /, default: object = None) -> object:
        # A character outside Latin-1 becomes "?", which no header name contains.
        value = self.by_name.get(name.lower().encode("latin-1", "replace"))
        return default if value is None else value.decode("latin-1")

    def getall(self, name: str) -> list[str]:
        """Every value of ``name``, in the order received (``[]`` when there is none)."""
        key = name.lower().encode("latin-1", "replace")
        return [value.decode("latin-1") for n, value in self._raw if n == key]

    def __getitem__(self, name: str) -> str:
        value = self.by_name.get(name.lower().encode("latin-1", "replace"))
        if value is None:
            raise KeyError(name)
        return value.decode("latin-1")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower().encode("latin-1", "replace") in self.by_name

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name in dict.fromkeys(n for n, _ in self._raw))

    def __len__(self) -> int:
        return len(self.by_name)

    def __repr__(self) -> str:
        return f"RawHeaders({list(self)!r})"
