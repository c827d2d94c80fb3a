"""uvicorn's httptools protocol, writing a response's head and first body part in one write(2).

uvicorn writes the status line and headers when the app sends http.response.start, and the body
when it sends http.response.body: two send(2) calls for every response of this service, whose
answers are one small body each. On loopback every send also runs the receiver's TCP path, and
the profile of the service under wrk had about a third of its samples in that send (bench/profile.py).
Here the head is held until the first body part and both leave together: half the sends, and the
client reads one segment instead of two. What is written is byte for byte the same.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


class _Held:
    """Stands in for the transport while uvicorn's send formats a message."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closed = True


class CoalescingCycle(RequestResponseCycle):
    """RequestResponseCycle whose response head waits for the first body part."""

    _head: bytes | None = None

    async def _format(self, message: Any) -> _Held:
        """uvicorn's own send (checks, head formatting, flow control, completion), its writes held."""
        held, transport = _Held(), self.transport
        self.transport = held  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport
        return held

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.start" and not self.response_started:
            self._head = b"".join((await self._format(message)).parts)
            return
        head = self._head
        if head is None:
            await super().send(message)
            return
        self._head = None
        held = _Held()
        try:
            held = await self._format(message)
        finally:
            self.transport.write(b"".join((head, *held.parts)))
            if held.closed:
                self.transport.close()


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol serving each request with a CoalescingCycle."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # uvicorn names its cycle class inside this method; the cycle's task has not started yet
        # (it looks up send when it runs), so its class can still be the subclass.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = CoalescingCycle
