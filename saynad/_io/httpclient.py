"""Every ``httpx.AsyncClient`` saynad makes comes from :func:`async_client`.

httpx sends a body given as bytes (``content=``, ``json=``) from an async generator.
When a send is cut short — the peer resets or refuses the connection, a timeout, a
cancel at a teardown deadline — httpcore leaves that generator unfinished, and trio
reports it with a ``ResourceWarning`` when the garbage collector finds it, long after
the request and far from its cause. The clients made here send such a body from a
plain iterator instead (a request hook swaps the stream): the same bytes, the same
``Content-Length``, nothing left behind.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

__all__ = ["OnePieceBody", "async_client"]


class OnePieceBody(httpx.AsyncByteStream):
    """A request body that goes out in one piece, from an iterator object rather than
    an async generator (see the module docstring)."""

    __slots__ = ("_data",)

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> _OnePiece:
        return _OnePiece(self._data)


class _OnePiece:
    __slots__ = ("_data",)

    def __init__(self, data: bytes | None) -> None:
        self._data = data

    def __aiter__(self) -> _OnePiece:
        return self

    async def __anext__(self) -> bytes:
        data = self._data
        if data is None:
            raise StopAsyncIteration
        self._data = None
        return data


async def _send_in_one_piece(request: httpx.Request) -> None:
    # Only httpx's own bytes body: a body the caller streams stays the caller's.
    if type(request.stream) is httpx.ByteStream:
        try:
            body = request.content
        except httpx.RequestNotRead:  # a stream handed to the request whole: left alone
            return
        request.stream = OnePieceBody(body)


def async_client(
    *,
    timeout: httpx.Timeout,
    transport: httpx.AsyncBaseTransport | None = None,
    headers: Mapping[str, str] | None = None,
    base_url: str = "",
    follow_redirects: bool = False,
) -> httpx.AsyncClient:
    """``httpx.AsyncClient`` with these settings, whose bytes bodies are sent by
    :class:`OnePieceBody`."""
    return httpx.AsyncClient(
        timeout=timeout,
        transport=transport,
        headers=headers,
        base_url=base_url,
        follow_redirects=follow_redirects,
        event_hooks={"request": [_send_in_one_piece]},
    )
