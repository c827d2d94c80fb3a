"""uvicorn's httptools protocol, writing a response's head and first body part in one write(2).

uvicorn writes the status line and headers when the app sends http.response.start, and the body
when it sends http.response.body: two send(2) calls for every response of this service, whose
answers are one small body each. On loopback every send also runs the receiver's TCP path (py-spy
put about a third of the service's wall-time samples in that send; perf, counting CPU time, puts the
whole kernel at 15-23% of it: bench/profile.py --perf). Here the head is held until the first body
part and both leave together: half the sends, and the client reads one segment instead of two.
What is written is byte for byte the same.

It serves the single-record endpoint's common request without ASGI (DirectIngest, direct.py): the
headers and body go to the app's DirectIngest, which answers with the whole response as bytes, or
declines before anything happened, and then the request is handed to uvicorn's ASGI machinery as if
its headers had only just been read.

It also answers the first request of a connection accepted just before a graceful shutdown.
uvicorn's shutdown closes every connection without a request in progress, including one it has
just accepted whose request is already in the socket's buffer, unread: the client gets a reset
for a request it sent before the shutdown began (seen during a password rotation's restart under
load). Such a connection now gets FIRST_REQUEST_GRACE seconds to deliver its request, which is
answered with `Connection: close`; a connection that has already been served is closed at once,
as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

if TYPE_CHECKING:
    from .direct import DirectIngest
    from .fast_decode import Record


class _Held:
    """Stands in for the transport while uvicorn's send formats a message."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def close(self) -> None:
        self.closed = True


def _nothing() -> None:
    pass


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
        # uvicorn's send ends a response with on_response, which starts the next pipelined request:
        # held back until the answer is written and the connection closed if it must be, so that
        # no request is processed once its answer can no longer be sent.
        on_response, self.on_response = self.on_response, _nothing
        held = _Held()
        try:
            held = await self._format(message)
        finally:
            self.on_response = on_response
            # A client gone away gets nothing: uvicorn's send drops it, and a write to a closed
            # transport raises (uvloop's "unable to perform operation on <...Transport closed=True>").
            if not (self.disconnected or self.transport.is_closing()):
                self.transport.write(b"".join((head, *held.parts)))
            if held.closed:
                self.transport.close()
        if self.response_complete:
            on_response()


# How long a connection accepted before a shutdown, with no request read yet, may take to deliver
# one: the request is normally in its buffer already and only waits for the event loop.
FIRST_REQUEST_GRACE = 1.0


class _DirectCycle:
    """Stands in for uvicorn's RequestResponseCycle while the direct path has the request: what
    the protocol's own methods read of a cycle (shutdown, connection_lost, pipelining)."""

    __slots__ = ("body", "disconnected", "keep_alive", "response_complete")

    def __init__(self, keep_alive: bool) -> None:
        self.body = b""
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False

    @property
    def message_event(self) -> _DirectCycle:
        return self

    def set(self) -> None:
        """connection_lost sets the cycle's message_event: nobody waits on it here."""


def _find_direct(app: Any) -> DirectIngest | None:
    """The app's DirectIngest, under whatever middleware uvicorn wrapped around it."""
    for _ in range(8):
        direct = getattr(app, "direct_ingest", None)
        if direct is not None:
            return direct
        app = getattr(app, "app", None)
    return None


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol serving each request with a CoalescingCycle, the common single record by
    the direct path, and draining fresh connections on shutdown."""

    _requests = 0
    _draining = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct = _find_direct(self.app)

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
        if self._direct_may_serve():
            self.cycle = _DirectCycle(self.parser.should_keep_alive())  # type: ignore[assignment]
            return
        self._start_asgi()

    def _direct_may_serve(self) -> bool:
        direct = self._direct
        if (
            direct is None
            or self.url != direct.raw_path
            or self._draining
            or self.expect_100_continue
            or not (self.cycle is None or self.cycle.response_complete)  # pipelined: keep the order
            or self.parser.get_method() != b"POST"
            or self.parser.get_http_version() != "1.1"
            or self.parser.should_upgrade()
        ):
            return False
        return direct.accepts(self.headers)

    def _start_asgi(self) -> None:
        super().on_headers_complete()
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        # uvicorn names its cycle class inside this method; the cycle's task has not started yet
        # (it looks up send when it runs), so its class can still be the subclass.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = CoalescingCycle

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is _DirectCycle:
            cycle.body += body
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not _DirectCycle:
            super().on_message_complete()
            return
        record = self._direct.take(cycle.body)  # type: ignore[union-attr]
        if record is None:
            # The ASGI path, as if the headers had only just been read: the parser still holds this
            # message's method, version and keep-alive, and nothing has been answered.
            self.cycle = None  # type: ignore[assignment]
            self._start_asgi()
            if cycle.body:
                super().on_body(cycle.body)
            super().on_message_complete()
            return
        # This message's headers: a pipelined request behind it gets a list of its own.
        task = self.loop.create_task(self._answer_directly(cycle, record, self.headers))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    async def _answer_directly(self, cycle: _DirectCycle, record: Record, headers: list[tuple[bytes, bytes]]) -> None:
        answer = await self._direct.answer(record, headers, self.server_state, cycle)  # type: ignore[union-attr]
        if cycle.disconnected or self.transport.is_closing():
            return
        # As uvicorn's cycle ends a response: complete, closed unless kept alive, then the next one.
        self.transport.write(answer)
        cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()
