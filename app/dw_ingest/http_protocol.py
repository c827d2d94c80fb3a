"""uvicorn's httptools protocol, writing a response's head and first body part in one write(2).

uvicorn writes the status line and headers when the app sends http.response.start, and the body
when it sends http.response.body: two send(2) calls for every response of this service, whose
answers are one small body each. On loopback every send also runs the receiver's TCP path, and
the profile of the service under wrk had about a third of its samples in that send (bench/profile.py).
Here the head is held until the first body part and both leave together: half the sends, and the
client reads one segment instead of two. What is written is byte for byte the same.

It also answers the first request of a connection accepted just before a graceful shutdown.
uvicorn's shutdown closes every connection without a request in progress, including one it has
just accepted whose request is already in the socket's buffer, unread: the client gets a reset
for a request it sent before the shutdown began (seen during a password rotation's restart under
load). Such a connection now gets FIRST_REQUEST_GRACE seconds to deliver its request, which is
answered with `Connection: close`; a connection that has already been served is closed at once,
as before.
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


# How long a connection accepted before a shutdown, with no request read yet, may take to deliver
# one: the request is normally in its buffer already and only waits for the event loop.
FIRST_REQUEST_GRACE = 1.0


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol serving each request with a CoalescingCycle, and draining fresh
    connections on shutdown."""

    _requests = 0
    _draining = False

    def shutdown(self) -> None:
        if self.cycle is None and self._requests == 0:
            # Not idle but new: its request may be in the buffer, unread. Close it only if none
            # arrives in time (uvicorn waits for open connections before it stops the app).
            self._draining = True
            self.loop.call_later(FIRST_REQUEST_GRACE, self._close_if_unused)
            return
        super().shutdown()

    def _close_if_unused(self) -> None:
        if self._requests == 0 and not self.transport.is_closing():
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._requests += 1
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        # uvicorn names its cycle class inside this method; the cycle's task has not started yet
        # (it looks up send when it runs), so its class can still be the subclass.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = CoalescingCycle
